"""The `asyncgen` command. Heavy imports happen inside commands so `--help` is instant."""

from __future__ import annotations

import keyword
import sys
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from asyncgen import __version__

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


Spec = Annotated[Path, typer.Argument(help="The AsyncAPI document (YAML or JSON).")]
RefsRoot = Annotated[
    Path | None,
    typer.Option(help="Folder that local $refs may not leave (default: the spec's folder)."),
]
AllowOutsideRefs = Annotated[bool, typer.Option(help="Let local $refs reach files anywhere.")]


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


def _project_settings(directory: Path) -> dict[str, Any]:
    """`[tool.asyncgen]` of the project in `directory`, or {} when there is none."""
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        _err(f"{pyproject}: error: cannot read it: {exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    settings = data.get("tool", {}).get("asyncgen", {})
    return settings if isinstance(settings, dict) else {}


def _report_problems(problems: list[Any]) -> None:
    for problem in problems:
        _err(str(problem))


@app.command()
def validate(
    spec: Spec,
    refs_root: RefsRoot = None,
    allow_outside_refs: AllowOutsideRefs = False,
) -> None:
    """Check an AsyncAPI document; every problem is printed with file, line and pointer."""
    from asyncgen.errors import SpecError
    from asyncgen.pipeline import Options, load_and_validate

    options = Options(refs_root=refs_root, allow_outside_refs=allow_outside_refs)
    try:
        _, warnings = load_and_validate(spec, options)
    except SpecError as exc:
        _report_problems(exc.problems)
        _err(f"{spec}: {len(exc.problems)} error(s)")
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
    refs_root: RefsRoot = None,
    allow_outside_refs: AllowOutsideRefs = False,
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
    import os

    from asyncgen.resources import builtin_templates
    from asyncgen.write import fastpath

    if spec is None:
        project = (output or Path.cwd()).resolve()
        settings = _project_settings(project)
        if "spec" not in settings:
            _err("error: no SPEC given and no [tool.asyncgen] spec in ./pyproject.toml")
            raise typer.Exit(EXIT_USAGE)
        spec = project / str(settings["spec"])
        output = project
        package_name = package_name or settings.get("package")
        if protocol is None and settings.get("protocol") in ("mqtt", "nats"):
            protocol = ProtocolChoice(settings["protocol"])
        if templates is None and settings.get("templates"):
            templates = project / str(settings["templates"])
        if refs_root is None and settings.get("refs_root"):
            refs_root = project / str(settings["refs_root"])
        allow_outside_refs = allow_outside_refs or settings.get("allow_outside_refs") is True
    if not spec.is_file():
        _err(f"{spec}: error: no such file")
        raise typer.Exit(EXIT_USAGE)
    if package_name is not None and (
        not package_name.isidentifier()
        or keyword.iskeyword(package_name)
        or not package_name.isascii()
    ):
        _err(f"error: --package-name {package_name!r} is not a valid Python package name")
        raise typer.Exit(EXIT_USAGE)
    if templates is not None and not templates.is_dir():
        _err(f"{templates}: error: templates folder not found")
        raise typer.Exit(EXIT_USAGE)

    def relative(path: Path | None, base: Path) -> str | None:
        return None if path is None else Path(os.path.relpath(path.resolve(), base)).as_posix()

    template_folders = [builtin_templates(), *([templates] if templates else [])]
    if output is not None and not dry_run:
        requested = fastpath.Settings(
            protocol=protocol.value if protocol else "",
            package=package_name or "",
            refs_root=relative(refs_root, output.resolve()),
            allow_outside_refs=allow_outside_refs,
            templates=relative(templates, output.resolve()),
        )
        if fastpath.up_to_date(output.resolve(), requested, template_folders, __version__):
            typer.echo(
                f"{output}: generated code is up to date" + ("" if check else "; nothing to do")
            )
            return

    from asyncgen.render import background, models

    # Generating makes models: a second core imports what that needs meanwhile.
    background.prepare(models.preload)

    from asyncgen.errors import SpecError, UnsupportedError
    from asyncgen.pipeline import Options, generate_project
    from asyncgen.write import EditedFilesError, compare, manifest_file, write_plan

    options = Options(
        protocol=protocol.value if protocol else None,
        package=package_name,
        templates=templates,
        refs_root=refs_root,
        allow_outside_refs=allow_outside_refs,
    )
    target = output
    try:
        if target is None:
            from asyncgen.model import build_api
            from asyncgen.pipeline import load_and_validate
            from asyncgen.render.context import package_name as derive

            doc, _ = load_and_validate(spec, options)
            api, _ = build_api(doc)
            target = Path.cwd() / (package_name or derive(api.title))
        generated = generate_project(spec, target, options)
    except SpecError as exc:
        _report_problems(exc.problems)
        _err(f"{spec}: {len(exc.problems)} error(s); nothing written")
        raise typer.Exit(EXIT_INVALID) from None
    except UnsupportedError as exc:
        _err(f"{spec}: error: {exc}; nothing written")
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        background.discard_prepared()
    _report_problems(generated.warnings)

    recorded = fastpath.Settings(
        protocol=generated.protocol,
        package=generated.package,
        refs_root=relative(refs_root, target.resolve()),
        allow_outside_refs=allow_outside_refs,
        templates=relative(templates, target.resolve()),
    )
    inputs = fastpath.relative_inputs(target.resolve(), generated.inputs)
    plan = [
        *generated.files,
        manifest_file(
            generated.files,
            __version__,
            fastpath.fingerprint(target.resolve(), inputs, recorded, template_folders, __version__),
            inputs,
            dict(recorded.__dict__),
        ),
    ]
    handler_dir = f"src/{generated.package}/handlers"
    report = compare(target, plan, handler_dir, generated.handler_modules)
    if check:
        stale = [path for path in report.stale if path != fastpath.MANIFEST]
        if not stale:
            typer.echo(f"{target}: generated code is up to date")
            return
        if quiet:
            typer.echo("\n".join(stale))
        else:
            for path in stale:
                typer.echo(report.diffs.get(path, f"new file: {path}"), nl=False)
        _err(f"{target}: {len(stale)} generated file(s) are stale; run asyncgen generate")
        raise typer.Exit(EXIT_INVALID)
    if dry_run:
        typer.echo(report.summary())
        if report.edited:
            typer.echo(f"edited by hand ({len(report.edited)}; generate stops unless --force):")
            typer.echo("\n".join(f"  {path}" for path in report.edited))
        return
    try:
        write_plan(target, plan, report, force=force)
    except EditedFilesError as exc:
        for path in exc.paths:
            _err(f"{target / path}: error: edited by hand since the last generation")
        _err(
            "nothing written. Move the change into a handler (src/<package>/handlers/) or a "
            "custom template (--templates), or pass --force to overwrite."
        )
        raise typer.Exit(EXIT_INVALID) from None
    typer.echo(report.summary())
    from asyncgen.write.signatures import check_handlers

    mismatches = check_handlers(target / handler_dir, generated.handler_signatures)
    if mismatches:
        _err("these handlers no longer match the spec (they are yours: update them):")
        for mismatch in mismatches:
            _err(f"  {mismatch}")
    if report.orphaned:
        _err(
            "these handler modules match no receive operation in the spec any more "
            "(left in place): " + ", ".join(report.orphaned)
        )
    typer.echo(f"generated {generated.protocol.upper()} project in {target}")


def _load_api(spec: Path, options: Any, label: str, exit_code: int) -> Any:
    """The document's model, or exit with `exit_code` after printing every problem."""
    from asyncgen.errors import SpecError
    from asyncgen.model import build_api
    from asyncgen.pipeline import load_and_validate

    try:
        doc, _ = load_and_validate(spec, options)
        api, _ = build_api(doc)
    except SpecError as exc:
        _report_problems(exc.problems)
        _err(f"{label}: {len(exc.problems)} error(s)")
        raise typer.Exit(exit_code) from None
    return api


class BrokerChoice(StrEnum):
    mosquitto = "mosquitto"
    nats = "nats"


@app.command()
def acl(
    spec: Spec,
    broker: Annotated[BrokerChoice, typer.Option(help="mosquitto or nats.")],
    service_user: Annotated[
        str | None,
        typer.Option(help="The service's user name on the broker (default: the package name)."),
    ] = None,
    package_name: Annotated[
        str | None,
        typer.Option(help="The generated package's name (default: from info.title)."),
    ] = None,
    user: Annotated[
        list[str] | None,
        typer.Option(
            help="NATS: a client's user name, or NAME:CLIENT_ID; may be given again.",
        ),
    ] = None,
    users: Annotated[
        Path | None,
        typer.Option(help="NATS: a file of clients, one NAME or NAME:CLIENT_ID a line."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (default: print).")
    ] = None,
    refs_root: RefsRoot = None,
    allow_outside_refs: AllowOutsideRefs = False,
) -> None:
    """Write least-privilege broker access rules for the service and its clients."""
    from asyncgen import acl as rules_of
    from asyncgen.pipeline import Options
    from asyncgen.render.context import package_name as default_package

    names = list(user or [])
    if users is not None:
        try:
            names += [line.strip() for line in users.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            _err(f"{users}: error: cannot read it: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
    clients = []
    for entry in (name for name in names if name and not name.startswith("#")):
        name, _, client_id = entry.partition(":")
        if not rules_of.valid_user(name) or (client_id and not rules_of.valid_user(client_id)):
            _err(f"error: {entry!r} is not a user name (letters, digits, `_`, `-`, `@`)")
            raise typer.Exit(EXIT_USAGE)
        clients.append(rules_of.User(name, client_id or None))
    if clients and broker == BrokerChoice.mosquitto:
        _err("error: --user and --users are for NATS; mosquitto's patterns cover every user")
        raise typer.Exit(EXIT_USAGE)
    options = Options(refs_root=refs_root, allow_outside_refs=allow_outside_refs)
    api = _load_api(spec, options, str(spec), EXIT_INVALID)
    package = package_name or default_package(api.title)
    service = service_user or package
    if not rules_of.valid_user(service):
        _err(f"error: {service!r} is not a user name (letters, digits, `_`, `-`, `@`)")
        raise typer.Exit(EXIT_USAGE)
    protocol: Literal["mqtt", "nats"] = "mqtt" if broker == BrokerChoice.mosquitto else "nats"
    rules = rules_of.build_rules(api, protocol, rules_of.dead_letter_address(package, protocol))
    header = (
        f"Access rules of {api.title} {api.version}, made by asyncgen {__version__}:\n"
        f"  asyncgen acl {spec.name} --broker {broker.value}"
    )
    if broker == BrokerChoice.mosquitto:
        text = rules_of.mosquitto_acl(rules, service, header)
    else:
        text = rules_of.nats_authorization(rules, service, clients, header)
    for note in rules.notes:
        _err(f"{spec}: note: {note}")
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _err(f"{output}: error: cannot write it: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(f"wrote {broker.value} rules for {service} to {output}")


class DiffFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def diff(
    old: Annotated[
        str,
        typer.Argument(
            help="The old version: a file, or git:REV:path (git:origin/main:asyncapi.yaml)."
        ),
    ],
    new: Annotated[str, typer.Argument(help="The new version: a file, or git:REV:path.")],
    format: Annotated[
        DiffFormat, typer.Option("--format", help="text for people, json for tools.")
    ] = DiffFormat.text,
    refs_root: RefsRoot = None,
    allow_outside_refs: AllowOutsideRefs = False,
) -> None:
    """Say what changed between two versions of a document, and whom each change breaks.

    Exit 1 when a change breaks the service or its clients."""
    import tempfile

    from asyncgen.diff import compare, render_json, render_text
    from asyncgen.gitfiles import GitError, checkout_file
    from asyncgen.pipeline import Options

    apis = []
    with tempfile.TemporaryDirectory(prefix="asyncgen-diff-") as scratch:
        for index, argument in enumerate((old, new)):
            root = refs_root
            if argument.startswith("git:"):
                try:
                    path, root = checkout_file(argument, Path(scratch) / str(index))
                except GitError as exc:
                    _err(f"error: {argument}: {exc}")
                    raise typer.Exit(EXIT_USAGE) from None
            else:
                path = Path(argument)
            options = Options(refs_root=root, allow_outside_refs=allow_outside_refs)
            apis.append(_load_api(path, options, argument, EXIT_USAGE))
    changes = compare(apis[0], apis[1])
    if format == DiffFormat.json:
        typer.echo(render_json(changes), nl=False)
    else:
        typer.echo(render_text(changes, old, new), nl=False)
    if any(change.breaking for change in changes):
        raise typer.Exit(EXIT_INVALID)


def main() -> None:  # pragma: no cover - for `python -m asyncgen`
    sys.exit(app())
