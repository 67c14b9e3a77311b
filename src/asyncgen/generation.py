"""The library's entry point: `generate(spec, config) -> Outcome` plans, checks, dry-runs
or writes a project; `validate(spec, config)` reports every problem of a document.

The CLI only turns options into a `Config` and prints the `Outcome`. Problems with the
document raise `SpecError` (every problem at once) or `UnsupportedError`; problems with
the call raise `UsageError`; generated files edited by hand raise `EditedFilesError`.
This module imports nothing heavy until it has to: answering "up to date" from the
manifest loads neither the document nor the model generator.
"""

from __future__ import annotations

import keyword
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from asyncgen import __version__
from asyncgen.errors import Problem, UsageError
from asyncgen.render.protocols import MQTT_CLIENTS, MqttClientName
from asyncgen.resources import builtin_templates
from asyncgen.write import manifest

if TYPE_CHECKING:
    from asyncgen.pipeline import Generated, Options
    from asyncgen.plan import PlannedFile
    from asyncgen.write import Report

Mode = Literal["write", "check", "dry-run"]


@dataclass(frozen=True)
class Config:
    """How to generate. `output` None means `./<package>`; `mode` says what to do:
    write the project, `check` whether it is current, or `dry-run` (render everything
    and say what writing would do, writing nothing)."""

    output: Path | None = None
    protocol: Literal["mqtt", "nats"] | None = None
    package: str | None = None
    templates: Path | None = None
    refs_root: Path | None = None
    allow_outside_refs: bool = False
    allow_remote_refs: bool = False
    #: The MQTT client library the generated service runs on by default; None: as
    #: `[tool.asyncgen]` says, else aiomqtt.
    mqtt_client: MqttClientName | None = None
    mode: Mode = "write"
    force: bool = False


@dataclass
class Outcome:
    """What a generation found and did."""

    target: Path
    #: True when the manifest showed the project current: nothing was rendered.
    up_to_date: bool
    protocol: str = ""
    package: str = ""
    warnings: list[Problem] = field(default_factory=list)
    #: What writing does (or did) to each file; None when answered from the manifest.
    report: Report | None = None
    #: Generated files that differ from what the spec produces (the manifest aside).
    stale: list[str] = field(default_factory=list)
    written: bool = False
    #: Handlers (the user's) that no longer fit the spec, each as `file:line: sentence`.
    mismatches: list[str] = field(default_factory=list)


def project_config(project: Path, config: Config) -> tuple[Path, Config]:
    """The spec and config recorded under `[tool.asyncgen]` in `project`'s pyproject.toml,
    with what `config` sets explicitly taking precedence."""
    pyproject = project / "pyproject.toml"
    settings: Any = {}
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{pyproject}: error: cannot read it: {exc}") from exc
        settings = data.get("tool", {}).get("asyncgen", {})
    if not isinstance(settings, dict) or "spec" not in settings:
        raise UsageError("error: no SPEC given and no [tool.asyncgen] spec in ./pyproject.toml")

    def path(key: str) -> Path | None:
        return project / str(settings[key]) if settings.get(key) else None

    recorded_protocol = settings.get("protocol")
    recorded_client = settings.get("mqtt_client")
    return project / str(settings["spec"]), replace(
        config,
        output=project,
        package=config.package or settings.get("package"),
        protocol=config.protocol
        or (recorded_protocol if recorded_protocol in ("mqtt", "nats") else None),
        templates=config.templates or path("templates"),
        refs_root=config.refs_root or path("refs_root"),
        allow_outside_refs=config.allow_outside_refs or settings.get("allow_outside_refs") is True,
        allow_remote_refs=config.allow_remote_refs or settings.get("allow_remote_refs") is True,
        mqtt_client=config.mqtt_client
        or (recorded_client if recorded_client in MQTT_CLIENTS else None),
    )


def _options(config: Config) -> Options:
    from asyncgen.pipeline import Options

    return Options(
        protocol=config.protocol,
        package=config.package,
        templates=config.templates,
        refs_root=config.refs_root,
        allow_outside_refs=config.allow_outside_refs,
        allow_remote_refs=config.allow_remote_refs,
        mqtt_client=config.mqtt_client or "aiomqtt",
    )


def validate(spec: Path, config: Config | None = None) -> list[Problem]:
    """Every warning of the document; raises SpecError with every error (the same checks
    `generate` runs)."""
    from asyncgen.pipeline import load_and_validate

    _check_call(spec, config or Config())
    _, checked = load_and_validate(spec, _options(config or Config()))
    return checked.problems


def _check_call(spec: Path, config: Config) -> None:
    if not spec.is_file():
        raise UsageError(f"{spec}: error: no such file")
    package = config.package
    if package is not None and (
        not package.isidentifier() or keyword.iskeyword(package) or not package.isascii()
    ):
        raise UsageError(f"error: --package-name {package!r} is not a valid Python package name")
    if config.templates is not None and not config.templates.is_dir():
        raise UsageError(f"{config.templates}: error: templates folder not found")


def _settings(config: Config, target: Path, protocol: str, package: str) -> manifest.Settings:
    def relative(path: Path | None) -> str | None:
        return None if path is None else Path(os.path.relpath(path.resolve(), target)).as_posix()

    return manifest.Settings(
        protocol=protocol,
        package=package,
        refs_root=relative(config.refs_root),
        allow_outside_refs=config.allow_outside_refs,
        templates=relative(config.templates),
        allow_remote_refs=config.allow_remote_refs,
        mqtt_client=config.mqtt_client or "aiomqtt",
    )


def generate(spec: Path, config: Config | None = None) -> Outcome:
    """Generate the project of `spec` as `config` says; see `Config.mode`."""
    config = config or Config()
    _check_call(spec, config)
    template_folders = [builtin_templates(), *([config.templates] if config.templates else [])]
    if config.output is not None and config.mode in ("write", "check"):
        target = config.output.resolve()
        requested = _settings(config, target, config.protocol or "", config.package or "")
        if manifest.up_to_date(target, requested, template_folders, __version__):
            # The handlers are the user's, so they may have changed since: check them.
            from asyncgen.write.signatures import check_handlers

            data = manifest.read(target)
            recorded = data.get("settings", {})
            handlers = target / "src" / str(recorded.get("package")) / "handlers"
            return Outcome(
                config.output,
                up_to_date=True,
                mismatches=check_handlers(
                    handlers,
                    manifest.recorded_handlers(target, data),
                    fitting=manifest.fitting_handlers(target, data),
                ),
            )

    from asyncgen.render import background, models

    # Generating makes models: a second core imports what that needs meanwhile.
    background.prepare(*models.PRELOAD)
    from asyncgen import pipeline

    options = _options(config)
    early: _EarlyWrite | None = None
    try:
        try:
            modelled = pipeline.model(spec, options)
            output = config.output or Path.cwd() / modelled.package
            if config.mode == "write":
                early = _EarlyWrite(output, config.force)
            generated = pipeline.render(spec, modelled, output, options, early)
        finally:
            background.discard_prepared()
        return _write(config, output, generated, template_folders, early)
    except BaseException:
        if early is not None:
            early.staging.discard()
        raise


class _EarlyWrite:
    """Compares and stages the files that do not depend on the models while the models
    are made (see `plan_project`); `_write` stages the rest and puts all in place. Files
    edited by hand are not staged here: `_write` names them with the others."""

    def __init__(self, output: Path, force: bool) -> None:
        from asyncgen.write import Staging

        self.staging = Staging(output)
        self.force = force
        #: What writing the files given to it would do; None until it has them.
        self.report: Report | None = None
        #: The paths of those files.
        self.paths: set[str] = set()
        self.staged = False

    def __call__(self, files: list[PlannedFile]) -> None:
        from asyncgen.write import compare

        self.paths = {planned.path for planned in files}
        self.report = compare(self.staging.root, files, diffs=False)
        if not self.report.edited or self.force:
            self.staging.stage(files, self.report, force=self.force)
            self.staged = True


def _write(
    config: Config,
    output: Path,
    generated: Generated,
    template_folders: list[Path],
    early: _EarlyWrite | None = None,
) -> Outcome:
    from asyncgen.write import Staging, compare
    from asyncgen.write.signatures import check_handlers, fitting_digest

    target = output.resolve()
    settings = _settings(config, target, generated.protocol, generated.package)
    inputs = manifest.Inputs.of(target, generated.inputs, generated.remote)
    handler_dir = f"src/{generated.package}/handlers"
    # The handlers are checked before writing, which leaves the existing ones alone. A
    # module found fitting by an earlier generation (the same content and signature) is
    # not parsed again; a stub about to be written fits by construction.
    fitting: dict[str, str] = {}
    mismatches = check_handlers(
        output / handler_dir,
        generated.handler_signatures,
        missing=config.mode == "check",
        fitting=manifest.fitting_handlers(target),
        found_fitting=fitting,
    )
    if config.mode == "write":
        stubs = {planned.path: planned.content for planned in generated.files if planned.content}
        for expected in generated.handler_signatures:
            stub = stubs.get(f"{handler_dir}/{expected.module}.py")
            if stub is not None and expected.module not in fitting:
                fitting[expected.module] = fitting_digest(stub.encode("utf-8"), expected)
    plan = [
        *generated.files,
        manifest.manifest_file(
            generated.files,
            __version__,
            manifest.fingerprint(target, inputs, settings, template_folders, __version__),
            inputs,
            settings,
            generated.handler_signatures,
            fitting,
        ),
    ]
    # The files compared (and staged) while the models were made are not compared again.
    done = early.paths if early is not None else set()
    report = compare(
        output,
        [planned for planned in plan if planned.path not in done],
        handler_dir,
        generated.handler_modules,
        diffs=config.mode == "check",
    )
    if early is not None and early.report is not None:
        report = early.report.joined(report, [planned.path for planned in plan])
    outcome = Outcome(
        target=output,
        up_to_date=False,
        protocol=generated.protocol,
        package=generated.package,
        warnings=generated.warnings,
        report=report,
        stale=[path for path in report.stale if path != manifest.MANIFEST],
    )
    if config.mode == "write":
        staging = early.staging if early is not None else Staging(output)
        staged = done if early is not None and early.staged else set()
        staging.stage([p for p in plan if p.path not in staged], report, force=config.force)
        staging.commit()
        manifest.remember_generated(plan)
        outcome.written = True
    # A dry run would write the missing stubs: only the existing handlers can be wrong.
    outcome.mismatches = mismatches
    return outcome
