"""The `asyncgen` command. Heavy imports happen inside commands so `--help` is instant."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from asyncgen import __version__

if TYPE_CHECKING:
    from asyncgen.generation import Outcome

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Generate runnable Python MQTT and NATS services from AsyncAPI documents.",
    pretty_exceptions_enable=False,
)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class ProtocolChoice(StrEnum):
    mqtt = "mqtt"
    nats = "nats"


def _err(text: str) -> None:
    typer.echo(text, err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"asyncgen {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Generate runnable Python MQTT and NATS services from AsyncAPI documents."""


def _report_problems(problems: list[Any]) -> None:
    for problem in problems:
        _err(str(problem))


_REFS_ROOT_HELP = (
    "Folder that local $refs may not leave (default: the enclosing git repository, "
    "else the spec's folder)."
)


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="The AsyncAPI document (YAML or JSON).")],
    protocol: Annotated[
        ProtocolChoice | None,
        typer.Option(help="Check addresses for mqtt or nats (default: the document's servers)."),
    ] = None,
    refs_root: Annotated[Path | None, typer.Option(help=_REFS_ROOT_HELP)] = None,
    allow_outside_refs: Annotated[
        bool, typer.Option(help="Let local $refs reach files anywhere.")
    ] = False,
    allow_remote_refs: Annotated[
        bool, typer.Option(help="Fetch http(s):// $refs (cached; recorded in the manifest).")
    ] = False,
) -> None:
    """Check an AsyncAPI document; every problem is printed with file, line and pointer."""
    from asyncgen.errors import SpecError, UnsupportedError, UsageError
    from asyncgen.generation import Config
    from asyncgen.generation import validate as check

    config = Config(
        protocol=protocol.value if protocol else None,
        refs_root=refs_root,
        allow_outside_refs=allow_outside_refs,
        allow_remote_refs=allow_remote_refs,
    )
    try:
        warnings = check(spec, config)
    except UsageError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except SpecError as exc:
        _report_problems(exc.problems)
        _err(f"{spec}: {len(exc.problems)} error(s)")
        raise typer.Exit(EXIT_INVALID) from None
    except UnsupportedError as exc:
        _err(f"{spec}: error: {exc}")
        raise typer.Exit(EXIT_INVALID) from None
    _report_problems(warnings)
    typer.echo(f"{spec}: valid")


@app.command()
def generate(
    spec: Annotated[
        Path | None,
        typer.Argument(help="The AsyncAPI document; inside a generated project, omit it."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Project folder (default: ./<package>)."),
    ] = None,
    package_name: Annotated[
        str | None, typer.Option(help="Python package name (default: from info.title).")
    ] = None,
    protocol: Annotated[
        ProtocolChoice | None,
        typer.Option(help="mqtt or nats (default: from the document's servers)."),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option(help="Folder of templates that override the built-in ones by path."),
    ] = None,
    refs_root: Annotated[Path | None, typer.Option(help=_REFS_ROOT_HELP)] = None,
    allow_outside_refs: Annotated[
        bool, typer.Option(help="Let local $refs reach files anywhere.")
    ] = False,
    allow_remote_refs: Annotated[
        bool, typer.Option(help="Fetch http(s):// $refs (cached; recorded in the manifest).")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(help="Write nothing; exit 1 with a diff when generated files are stale."),
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Print what would change; write nothing.")] = False,
    force: Annotated[
        bool, typer.Option(help="Overwrite generated files even if edited by hand.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="With --check: list stale files, no diff.")] = False,
) -> None:
    """Generate (or regenerate) a service project from an AsyncAPI document."""
    from asyncgen.errors import SpecError, UnsupportedError, UsageError
    from asyncgen.generation import Config, project_config
    from asyncgen.generation import generate as run
    from asyncgen.write import EditedFilesError

    config = Config(
        output=output,
        protocol=protocol.value if protocol else None,
        package=package_name,
        templates=templates,
        refs_root=refs_root,
        allow_outside_refs=allow_outside_refs,
        allow_remote_refs=allow_remote_refs,
        mode="check" if check else "dry-run" if dry_run else "write",
        force=force,
    )
    try:
        if spec is None:
            spec, config = project_config((output or Path.cwd()).resolve(), config)
        outcome = run(spec, config)
    except UsageError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except SpecError as exc:
        _report_problems(exc.problems)
        _err(f"{spec}: {len(exc.problems)} error(s); nothing written")
        raise typer.Exit(EXIT_INVALID) from None
    except UnsupportedError as exc:
        _err(f"{spec}: error: {exc}; nothing written")
        raise typer.Exit(EXIT_INVALID) from None
    except EditedFilesError as exc:
        for path in exc.paths:
            _err(f"{exc.root / path}: error: edited by hand since the last generation")
        _err(
            "nothing written. Move the change into a handler (src/<package>/handlers/) or a "
            "custom template (--templates), or pass --force to overwrite."
        )
        raise typer.Exit(EXIT_INVALID) from None
    _print(outcome, check=check, quiet=quiet)


def _print(outcome: Outcome, *, check: bool, quiet: bool) -> None:
    target = outcome.target
    if outcome.up_to_date:
        typer.echo(f"{target}: generated code is up to date" + ("" if check else "; nothing to do"))
        return
    _report_problems(outcome.warnings)
    report = outcome.report
    assert report is not None
    if check:
        if not outcome.stale:
            typer.echo(f"{target}: generated code is up to date")
            return
        if quiet:
            typer.echo("\n".join(outcome.stale))
        else:
            for path in outcome.stale:
                typer.echo(report.diffs.get(path, f"new file: {path}"), nl=False)
        _err(f"{target}: {len(outcome.stale)} generated file(s) are stale; run asyncgen generate")
        raise typer.Exit(EXIT_INVALID)
    if not outcome.written:
        typer.echo(report.summary())
        if report.edited:
            typer.echo(f"edited by hand ({len(report.edited)}; generate stops unless --force):")
            typer.echo("\n".join(f"  {path}" for path in report.edited))
        return
    typer.echo(report.summary())
    if outcome.mismatches:
        _err("these handlers no longer match the spec (they are yours: update them):")
        for mismatch in outcome.mismatches:
            _err(f"  {mismatch}")
    if report.orphaned:
        _err(
            "these handler modules match no receive operation in the spec any more "
            "(left in place): " + ", ".join(report.orphaned)
        )
    typer.echo(f"generated {outcome.protocol.upper()} project in {target}")


def main() -> None:  # pragma: no cover - for `python -m asyncgen`
    sys.exit(app())
