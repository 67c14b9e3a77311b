"""The `asyncgen` command. Heavy imports happen inside commands so `--help` is instant."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from asyncgen import __version__

if TYPE_CHECKING:
    from asyncgen.generation import Outcome

app = typer.Typer(
    # `asyncgen --install-completion` sets up completion for the user's shell.
    add_completion=True,
    # Plain help: options read as `--force / --no-force  ...`, without type markers.
    rich_markup_mode=None,
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


class MqttClientChoice(StrEnum):
    aiomqtt = "aiomqtt"
    gmqtt = "gmqtt"


def _flag(name: str, help: str) -> Any:
    """An on/off option: `--name` alone, without a `--no-name` twin or a default shown."""
    return typer.Option(name, help=help, show_default=False)


Spec = Annotated[Path, typer.Argument(help="The AsyncAPI document (YAML or JSON).")]
RefsRoot = Annotated[
    Path | None,
    typer.Option(
        help="Folder that local $refs may not leave (default: the enclosing git repository, "
        "else the spec's folder)."
    ),
]
AllowOutsideRefs = Annotated[
    bool, _flag("--allow-outside-refs", "Let local $refs reach files anywhere.")
]
AllowRemoteRefs = Annotated[
    bool, _flag("--allow-remote-refs", "Fetch http(s):// $refs (cached; recorded in the manifest).")
]


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
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version.",
            show_default=False,
        ),
    ] = False,
) -> None:
    """Generate runnable Python MQTT and NATS services from AsyncAPI documents."""


def _report_problems(problems: list[Any]) -> None:
    for problem in problems:
        _err(str(problem))


@app.command(short_help="Check a document; print every problem with its place.")
def validate(
    spec: Spec,
    protocol: Annotated[
        ProtocolChoice | None,
        typer.Option(help="Check addresses for mqtt or nats (default: the document's servers)."),
    ] = None,
    refs_root: RefsRoot = None,
    allow_outside_refs: AllowOutsideRefs = False,
    allow_remote_refs: AllowRemoteRefs = False,
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


@app.command(short_help="Generate or regenerate a service project.")
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
    mqtt_client: Annotated[
        MqttClientChoice | None,
        typer.Option(
            help="MQTT projects: the client library the service runs on unless MQTT_CLIENT "
            "says otherwise (default aiomqtt; gmqtt is several times faster)."
        ),
    ] = None,
    refs_root: RefsRoot = None,
    allow_outside_refs: AllowOutsideRefs = False,
    allow_remote_refs: AllowRemoteRefs = False,
    check: Annotated[
        bool,
        _flag(
            "--check",
            "Write nothing; exit 1 with a diff when generated files are stale or a handler "
            "no longer fits the spec.",
        ),
    ] = False,
    dry_run: Annotated[bool, _flag("--dry-run", "Print what would change; write nothing.")] = False,
    force: Annotated[
        bool, _flag("--force", "Overwrite generated files even if edited by hand.")
    ] = False,
    quiet: Annotated[bool, _flag("--quiet", "With --check: list stale files, no diff.")] = False,
    allow_stale_handlers: Annotated[
        bool,
        _flag("--allow-stale-handlers", "Exit 0 even when a handler no longer fits the spec."),
    ] = False,
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
        mqtt_client=mqtt_client.value if mqtt_client else None,
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
    if outcome.mismatches:
        _err("these handlers no longer fit the spec (they are yours: update them):")
        for mismatch in outcome.mismatches:
            _err(f"  {mismatch}")
    _print(outcome, check=check, quiet=quiet)
    if outcome.mismatches and (check or not allow_stale_handlers):
        raise typer.Exit(EXIT_INVALID)


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
    if report.orphaned:
        _err(
            "these handler modules match no receive operation in the spec any more "
            "(left in place): " + ", ".join(report.orphaned)
        )
    typer.echo(f"generated {outcome.protocol.upper()} project in {target}")


def _load_api(spec: Path, options: Any, label: str, exit_code: int) -> Any:
    """The document's model, or exit with `exit_code` after printing every problem."""
    from asyncgen.errors import SpecError
    from asyncgen.model import build_api
    from asyncgen.pipeline import load_and_validate

    try:
        doc, checked = load_and_validate(spec, options)
        api, _ = build_api(doc, checked.unfit_examples)
    except SpecError as exc:
        _report_problems(exc.problems)
        _err(f"{label}: {len(exc.problems)} error(s)")
        raise typer.Exit(exit_code) from None
    return api


class BrokerChoice(StrEnum):
    mosquitto = "mosquitto"
    nats = "nats"


@app.command(short_help="Write least-privilege broker access rules.")
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
            metavar="NAME[:CLIENT_ID]",
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
    allow_remote_refs: AllowRemoteRefs = False,
) -> None:
    """Write least-privilege broker access rules for the service and its clients."""
    from asyncgen import acl as rules_of
    from asyncgen.pipeline import Options
    from asyncgen.render.context import package_name as default_package
    from asyncgen.render.protocols import PROFILES

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
    protocol: Literal["mqtt", "nats"] = "mqtt" if broker == BrokerChoice.mosquitto else "nats"
    options = Options(
        protocol=protocol,
        refs_root=refs_root,
        allow_outside_refs=allow_outside_refs,
        allow_remote_refs=allow_remote_refs,
    )
    api = _load_api(spec, options, str(spec), EXIT_INVALID)
    package = package_name or default_package(api.title)
    service = service_user or package
    if not rules_of.valid_user(service):
        _err(f"error: {service!r} is not a user name (letters, digits, `_`, `-`, `@`)")
        raise typer.Exit(EXIT_USAGE)
    dead_letter = PROFILES[protocol].dead_letter_address(package)
    rules = rules_of.build_rules(
        api, protocol, dead_letter, PROFILES[protocol].dead_letter_stream(package)
    )
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


@app.command(short_help="Say what changed between two versions, and whom it breaks.")
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
    allow_remote_refs: AllowRemoteRefs = False,
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
            options = Options(
                refs_root=root,
                allow_outside_refs=allow_outside_refs,
                allow_remote_refs=allow_remote_refs,
            )
            apis.append(_load_api(path, options, argument, EXIT_USAGE))
    changes = compare(apis[0], apis[1])
    if format == DiffFormat.json:
        typer.echo(render_json(changes), nl=False)
    else:
        typer.echo(render_text(changes, old, new), nl=False)
    if any(change.breaking for change in changes):
        raise typer.Exit(EXIT_INVALID)


def main() -> None:  # pragma: no cover - `python -m asyncgen` and the `asyncgen` command
    # A run allocates hundreds of thousands of small objects (the document's nodes, the
    # schemas, the rendered text) and frees few before it exits, and the cyclic collector
    # walks them all again at every collection: a tenth of a one-channel change in a
    # 1,000-channel document, even collected rarely. This process runs without it (the
    # models' child process keeps it, see `render.background`): a 3,000-channel
    # generation peaks a few MiB higher.
    gc.disable()
    # Stopped (a CI job cancelled, say), a generation undoes what it has staged, as it does
    # on any other failure.
    signal.signal(signal.SIGTERM, _terminated)
    from asyncgen.render import background

    if _generating(sys.argv[1:]):
        # Generating makes models: the child that imports what they need (a good part of
        # a first generation) starts now, before typer reads the command line, which
        # takes a fifth of a second of its own. A run that needs no models (the project
        # is up to date, the command line is wrong) stops it before leaving.
        from asyncgen.render import models

        background.prepare(*models.PRELOAD)
    try:
        app()
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc.code)
    background.discard_prepared()
    # Everything is written and closed by now: leave without freeing the run's objects
    # one by one on the way out (a twentieth of a large generation).
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _generating(args: list[str]) -> bool:
    """Whether a command line asks to generate (not for help)."""
    return bool(args) and args[0] == "generate" and "--help" not in args


def _exit_status(code: object) -> int:
    """What `sys.exit(code)` would exit with, printing a message as it does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
