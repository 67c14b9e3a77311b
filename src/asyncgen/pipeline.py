"""The pipeline from a spec file to a planned project: load, validate, model, render."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asyncgen import __version__
from asyncgen.errors import Level, Problem, SpecError, UnsupportedError
from asyncgen.load import Document, RefPolicy, load_document
from asyncgen.model import Api, build_api
from asyncgen.plan import PlannedFile
from asyncgen.render.background import Background
from asyncgen.render.context import Protocol, build_context, package_name
from asyncgen.render.models import formatted_models, models_cached
from asyncgen.render.project import plan_project
from asyncgen.validate import validate_document
from asyncgen.write.signatures import Expected

_PROTOCOLS: dict[str, Protocol] = {
    "mqtt": "mqtt",
    "mqtts": "mqtt",
    "secure-mqtt": "mqtt",
    "mqtt5": "mqtt",
    "nats": "nats",
    "tls": "nats",
}


@dataclass
class Options:
    """How to generate: everything the CLI and `[tool.asyncgen]` can set."""

    protocol: Protocol | None = None
    package: str | None = None
    templates: Path | None = None
    refs_root: Path | None = None
    allow_outside_refs: bool = False


@dataclass
class Generated:
    api: Api
    protocol: Protocol
    package: str
    files: list[PlannedFile]
    warnings: list[Problem]
    handler_modules: set[str]
    handler_signatures: list[Expected]
    #: Every file the spec reached through `$ref`s, the spec itself first.
    inputs: list[Path]


def load_and_validate(spec: Path, options: Options) -> tuple[Document, list[Problem]]:
    """Load and validate; raises SpecError listing every error, returns the warnings."""
    policy = RefPolicy(allow_outside=options.allow_outside_refs, root=options.refs_root)
    doc = load_document(spec, policy)
    problems = validate_document(doc)
    errors = [p for p in problems if p.level == Level.ERROR]
    if errors:
        raise SpecError(errors)
    return doc, [p for p in problems if p.level == Level.WARNING]


def choose_protocol(api: Api, requested: Protocol | None) -> Protocol:
    """The protocol asked for, else the first MQTT or NATS server's, else MQTT."""
    if requested is not None:
        return requested
    if not api.servers:
        return "mqtt"
    first = api.servers[0].protocol
    if first in _PROTOCOLS:
        return _PROTOCOLS[first]
    for server in api.servers:
        if server.protocol in _PROTOCOLS:
            return _PROTOCOLS[server.protocol]
    used = ", ".join(sorted({server.protocol or "?" for server in api.servers}))
    raise UnsupportedError(
        f"unsupported: the document's servers speak {used}; asyncgen generates MQTT and NATS "
        "services (pass --protocol mqtt or --protocol nats to generate one anyway)"
    )


def generate_project(spec: Path, output: Path, options: Options) -> Generated:
    """Everything up to, not including, writing files."""
    doc, warnings = load_and_validate(spec, options)
    api, model_warnings = build_api(doc)
    protocol = choose_protocol(api, options.protocol)
    package = options.package or package_name(api.title)

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
        warnings=[*warnings, *model_warnings, *context.warnings],
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
        inputs=list(doc.files),
    )
