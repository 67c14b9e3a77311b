"""The stages from a spec file to a planned project: load, validate, model, render.

One direction: nothing here writes, and nothing after `check` looks at the document's
validity again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asyncgen import __version__
from asyncgen.asyncapi import Protocol, server_protocol
from asyncgen.errors import Level, Problem, SpecError, UnsupportedError
from asyncgen.load import Document, RefPolicy, load_document
from asyncgen.model import Api, build_api
from asyncgen.plan import Expected, PlannedFile
from asyncgen.render.background import Background
from asyncgen.render.context import build_context, package_name
from asyncgen.render.models import formatted_models, models_cached
from asyncgen.render.project import plan_project
from asyncgen.render.protocols import MqttClientName
from asyncgen.validate import Checked, check_document


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


@dataclass
class Modelled:
    """A checked document mapped into the model, with what generation decided from it."""

    doc: Document
    api: Api
    protocol: Protocol
    package: str
    warnings: list[Problem]


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
    checked = check_document(doc, options.protocol)
    errors = [p for p in checked.problems if p.level == Level.ERROR]
    if errors:
        raise SpecError(errors)
    return doc, checked


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
    """Load, validate and map the document; decide the protocol and the package name."""
    doc, checked = load_and_validate(spec, options)
    api, model_warnings = build_api(doc, checked.unfit_examples)
    protocol = choose_protocol(api, options.protocol)
    package = options.package or package_name(api.title)
    return Modelled(doc, api, protocol, package, [*checked.problems, *model_warnings])


def render(spec: Path, modelled: Modelled, output: Path, options: Options) -> Generated:
    """Plan every file of the project that goes into `output`."""
    api, protocol, package = modelled.api, modelled.protocol, modelled.package

    def relative(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), output.resolve())).as_posix()

    context = build_context(
        api,
        protocol,
        package,
        relative(spec),
        __version__,
        templates_path=relative(options.templates) if options.templates else None,
        refs_root_path=relative(options.refs_root) if options.refs_root else None,
        allow_outside_refs=options.allow_outside_refs,
        allow_remote_refs=options.allow_remote_refs,
        mqtt_client=options.mqtt_client,
    )
    used = {m.class_name for op in context.operations for m in [*op.messages, *op.reply_messages]}
    # The models and the templates need nothing of each other: with a second core, the
    # models are made in a child process meanwhile, unless the cache has them already.
    job = (api.schemas, context.class_names, used, package)
    cached = models_cached(api.schemas, context.class_names, used)
    with Background(formatted_models, job, start=not cached) as models:
        files = plan_project(context, models.result, options.templates, output)
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
