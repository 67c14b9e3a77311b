"""The stages from a spec file to a planned project: load, validate, model, render.

One direction: nothing here writes, and nothing after `check` looks at the document's
validity again.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncgen import __version__
from asyncgen.asyncapi import Protocol, server_protocol
from asyncgen.errors import Level, Problem, SpecError, UnsupportedError
from asyncgen.load import Document, RefPolicy, load_document
from asyncgen.model import Api, build_api
from asyncgen.plan import Expected, PlannedFile
from asyncgen.render.background import Background, can_fork
from asyncgen.render.context import ProjectContext, build_context, package_name
from asyncgen.render.models import Made, finish_models, made_models, models_cached
from asyncgen.render.protocols import MqttClientName

if TYPE_CHECKING:
    from asyncgen.validate import Checked


@dataclass
class Options:
    """How to generate: everything the CLI and `[tool.asyncgen]` can set."""

    protocol: Protocol | None = None
    package: str | None = None
    templates: Path | None = None
    refs_root: Path | None = None
    allow_outside_refs: bool = False
    allow_remote_refs: bool = False
    mqtt_client: MqttClientName = "aiomqtt"

    def policy(self) -> RefPolicy:
        return RefPolicy(
            allow_remote=self.allow_remote_refs,
            allow_outside=self.allow_outside_refs,
            root=self.refs_root,
        )


#: What the models are made of: the schemas, their class names, the classes that must
#: exist and the package (see `made_models`).
ModelsJob = tuple[dict[str, Any], dict[str, str], set[str], str]


@dataclass
class Modelled:
    """A checked document mapped into the model, with what generation decided from it."""

    doc: Document
    api: Api
    protocol: Protocol
    package: str
    warnings: list[Problem]
    #: The models started before the document was validated, and what they were made of.
    early: tuple[ModelsJob, Background[Made]] | None = None
    #: The context built then for `api`, `protocol` and `package`, if any.
    early_context: ProjectContext | None = None


@dataclass
class Early:
    """What was read from the document before it was validated (see `_early_models`)."""

    #: `build_api`'s result, assuming no unfit examples.
    built: tuple[Api, list[Problem]]
    #: The context of that `Api`, with no paths or options set.
    context: ProjectContext
    #: The models started meanwhile, and what they are made of; None when cached.
    models: tuple[ModelsJob, Background[Made]] | None


@dataclass
class Generated:
    api: Api
    protocol: Protocol
    package: str
    files: list[PlannedFile]
    warnings: list[Problem]
    handler_modules: set[str]
    handler_signatures: list[Expected]
    #: Every local file the spec reached through `$ref`s, the spec itself first.
    inputs: list[Path]
    #: Every remote document the spec reached: its URL and the hash of its content.
    remote: dict[str, str]


def load_and_validate(spec: Path, options: Options) -> tuple[Document, Checked]:
    """Load and validate; raises SpecError listing every error."""
    doc = load_document(spec, options.policy())
    return doc, _checked(doc, options)


def _checked(doc: Document, options: Options) -> Checked:
    # Imported here, as the templates are in `render`: until the models job is sent to
    # the child (see `_early_models`), this process imports only what that job needs.
    from asyncgen.validate import check_document

    checked = check_document(doc, options.protocol)
    errors = [p for p in checked.problems if p.level == Level.ERROR]
    if errors:
        raise SpecError(errors)
    return checked


def choose_protocol(api: Api, requested: Protocol | None) -> Protocol:
    """The protocol asked for, else the first MQTT or NATS server's, else MQTT."""
    chosen = server_protocol([server.protocol for server in api.servers], requested)
    if chosen is not None:
        return chosen
    used = ", ".join(sorted({server.protocol or "?" for server in api.servers}))
    raise UnsupportedError(
        f"unsupported: the document's servers speak {used}; asyncgen generates MQTT and NATS "
        "services (pass --protocol mqtt or --protocol nats to generate one anyway)"
    )


def model(spec: Path, options: Options) -> Modelled:
    """Load, validate and map the document; decide the protocol and the package name.

    With a second core, the models are started before validation (see `_early_models`).
    """
    doc = load_document(spec, options.policy())
    early = _early_models(doc, options)
    try:
        checked = _checked(doc, options)
        if early is not None and not checked.unfit_examples:
            # Mapped already, from the same document and the same (no) unfit examples.
            api, model_warnings = early.built
        else:
            api, model_warnings = build_api(doc, checked.unfit_examples)
        protocol = choose_protocol(api, options.protocol)
    except BaseException:
        if early is not None and early.models is not None:
            early.models[1].close()
        raise
    package = options.package or package_name(api.title)
    reused = early is not None and early.built[0] is api
    return Modelled(
        doc,
        api,
        protocol,
        package,
        [*checked.problems, *model_warnings],
        early.models if early is not None else None,
        early.context if early is not None and reused else None,
    )


def _models_job(api: Api, context: ProjectContext, package: str) -> ModelsJob:
    used = {m.class_name for op in context.operations for m in [*op.messages, *op.reply_messages]}
    return (api.schemas, context.class_names, used, package)


def _early_models(doc: Document, options: Options) -> Early | None:
    """The document mapped, and its models started in the child process, before the
    document is validated.

    Validating a large document takes as long as making its models, and the models only
    need the schemas and their class names: so these are read from the document as it
    is, and the models made meanwhile. `render` uses them only when the validated
    document asks for exactly the same models, and a document that fails validation
    never gets further; anything unexpected here just means no head start. Not with
    remote refs allowed: reading the document ahead of validation could fetch one that
    a failed validation would never have fetched.
    """
    if options.allow_remote_refs or not can_fork():
        return None
    try:
        built = build_api(doc, set())
        api = built[0]
        protocol = choose_protocol(api, options.protocol)
        package = options.package or package_name(api.title)
        context = build_context(api, protocol, package, "", __version__)
        job = _models_job(api, context, package)
        if models_cached(*job[:3]):
            return Early(built, context, None)
    except Exception:
        return None
    return Early(built, context, (job, Background(made_models, job)))


def render(
    spec: Path,
    modelled: Modelled,
    output: Path,
    options: Options,
    meanwhile: Callable[[list[PlannedFile]], None] | None = None,
) -> Generated:
    """Plan every file of the project that goes into `output`; the files that do not
    depend on the models go to `meanwhile` while those are made (see `plan_project`)."""
    api, protocol, package = modelled.api, modelled.protocol, modelled.package

    def relative(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), output.resolve())).as_posix()

    paths_and_options: dict[str, Any] = {
        "templates_path": relative(options.templates) if options.templates else None,
        "refs_root_path": relative(options.refs_root) if options.refs_root else None,
        "allow_outside_refs": options.allow_outside_refs,
        "allow_remote_refs": options.allow_remote_refs,
        "mqtt_client": options.mqtt_client,
    }
    early = modelled.early_context
    if early is not None and (early.protocol, early.package) == (protocol, package):
        # Built before validation from the same `Api`: only the paths and options differ.
        context = dataclasses.replace(
            early, spec_path=relative(spec), tool_version=__version__, **paths_and_options
        )
    else:
        context = build_context(
            api, protocol, package, relative(spec), __version__, **paths_and_options
        )
    # The models and the templates need nothing of each other: with a second core, the
    # models are made in a child process meanwhile (started early, when the early job is
    # the same), unless the cache has them already.
    job = _models_job(api, context, package)
    if modelled.early is not None and modelled.early[0] == job:
        models = modelled.early[1]
    else:
        if modelled.early is not None:
            modelled.early[1].close()
        models = Background(made_models, job, start=not models_cached(*job[:3]))
    modelled.early = None
    with models:
        from asyncgen.render.project import plan_project

        files = plan_project(
            context,
            lambda: finish_models(models.result(), package),
            options.templates,
            output,
            meanwhile,
        )
    return Generated(
        api=api,
        protocol=protocol,
        package=package,
        files=files,
        warnings=[*modelled.warnings, *context.warnings],
        handler_modules={op.module for op in context.receive},
        handler_signatures=[
            Expected(
                module=op.module,
                message_type=op.message_type,
                params_class=op.channel.params_class if op.channel.params else None,
                reply_type=op.reply_type,
            )
            for op in context.receive
        ],
        inputs=modelled.doc.local_files,
        remote={item.url: item.sha256 for item in modelled.doc.remote.values()},
    )


def generate_project(spec: Path, output: Path, options: Options) -> Generated:
    """Everything up to, not including, writing files."""
    return render(spec, model(spec, options), output, options)
