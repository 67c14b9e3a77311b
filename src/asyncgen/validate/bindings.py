"""MQTT and NATS bindings against their binding specifications, and asyncgen's own
`x-jetstream` operation extension.

AsyncAPI's schema leaves each protocol's binding to that protocol's specification; the
structure check only asks for mappings there. The schemas below follow the MQTT
bindings 0.1.0 and 0.2.0 and the NATS bindings 0.1.0 (their `bindingVersion` decides
which fields are known); where a field may also be a Schema Object, a mapping is let
through. Bindings of other protocols are not checked: asyncgen does not read them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from asyncgen.errors import Problem, SpecError
from asyncgen.load import Document, Ref
from asyncgen.load.source import unescape_token
from asyncgen.validate.quick import quick_validator, quickly_valid
from asyncgen.validate.schemas import EXTENSION_PATTERN, Schema
from asyncgen.validate.structure import explain

#: `enum` alone: jsonschema tells true from 1, and one message says it all.
_QOS: Schema = {"enum": [0, 1, 2]}
_UINT32: Schema = {"type": "integer", "minimum": 0, "maximum": 4294967295}


def _or_schema(schema: Schema) -> Schema:
    """A value, or a Schema Object (a mapping) that describes it."""
    return {"if": {"type": "object"}, "else": schema}


def _binding(title: str, versions: list[str], properties: Schema) -> Schema:
    return {
        "title": title,
        "type": "object",
        "properties": {**properties, "bindingVersion": {"type": "string", "enum": versions}},
        "patternProperties": {EXTENSION_PATTERN: {}},
        "additionalProperties": False,
    }


_MQTT_SERVER_010: Schema = {
    "clientId": {"type": "string"},
    "cleanSession": {"type": "boolean"},
    "lastWill": {
        "title": "the mqtt `lastWill`",
        "type": "object",
        "properties": {
            "topic": {"type": "string"},
            "qos": _QOS,
            "message": {"type": "string"},
            "retain": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "keepAlive": {"type": "integer", "minimum": 0},
}
_MQTT_SERVER_020: Schema = {
    **_MQTT_SERVER_010,
    "sessionExpiryInterval": _or_schema(_UINT32),
    "maximumPacketSize": _or_schema({"type": "integer", "minimum": 1, "maximum": 4294967295}),
}
_MQTT_OPERATION_010: Schema = {"qos": _QOS, "retain": {"type": "boolean"}}
_MQTT_OPERATION_020: Schema = {**_MQTT_OPERATION_010, "messageExpiryInterval": _or_schema(_UINT32)}
_MQTT_MESSAGE_020: Schema = {
    "payloadFormatIndicator": {"enum": [0, 1]},
    "correlationData": {"type": "object"},
    "contentType": {"type": "string"},
    "responseTopic": _or_schema({"type": "string", "minLength": 1}),
}
_NATS_OPERATION: Schema = {"queue": {"type": "string", "minLength": 1, "maxLength": 255}}

#: (protocol, kind, bindingVersion) -> the fields of that binding. The latest version
#: is assumed when `bindingVersion` is omitted, as the binding specifications say.
_FIELDS: dict[tuple[str, str], dict[str, Schema]] = {
    ("mqtt", "server"): {"0.1.0": _MQTT_SERVER_010, "0.2.0": _MQTT_SERVER_020},
    ("mqtt", "channel"): {"0.1.0": {}, "0.2.0": {}},
    ("mqtt", "operation"): {"0.1.0": _MQTT_OPERATION_010, "0.2.0": _MQTT_OPERATION_020},
    ("mqtt", "message"): {"0.1.0": {}, "0.2.0": _MQTT_MESSAGE_020},
    ("nats", "server"): {"0.1.0": {}},
    ("nats", "channel"): {"0.1.0": {}},
    ("nats", "operation"): {"0.1.0": _NATS_OPERATION},
    ("nats", "message"): {"0.1.0": {}},
}

_JETSTREAM: Schema = {
    "title": "the `x-jetstream` extension",
    "type": "object",
    "properties": {
        "stream": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "durable": {"type": "string", "minLength": 1, "pattern": r"\S"},
    },
    "required": ["stream", "durable"],
    "additionalProperties": False,
}


class _Check:
    """One schema: jsonschema-rs answers for a valid value, jsonschema explains the
    problems of any other (see `quick`)."""

    def __init__(self, schema: Schema) -> None:
        self._schema = schema
        self._quick = quick_validator(schema, 2020)
        self._full: Any = None

    def problems(self, doc: Document, value: Any, at: Ref) -> list[Problem]:
        if quickly_valid(self._quick, value):
            return []
        if self._full is None:
            from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

            self._full = Draft202012Validator(self._schema)
        prefix = tuple(unescape_token(token) for token in at.pointer.split("/")[1:])
        return [
            doc.problem(Ref(at.file, pointer), message)
            for error in self._full.iter_errors(value)
            for pointer, message in explain(error, prefix)
        ]


@cache
def _validator(protocol: str, kind: str, version: str) -> _Check:
    versions = _FIELDS[(protocol, kind)]
    title = f"the {protocol} binding of {'an' if kind == 'operation' else 'a'} {kind}"
    return _Check(_binding(title, sorted(versions), versions[version]))


@cache
def _jetstream_validator() -> _Check:
    return _Check(_JETSTREAM)


def _kind(tokens: list[str]) -> str | None:
    """Whether the bindings object at `tokens` (a JSON pointer's tokens in the root file)
    belongs to a server, a channel, an operation or a message."""
    if len(tokens) == 3 and tokens[0] == "components" and tokens[1].endswith("Bindings"):
        return {
            "serverBindings": "server",
            "channelBindings": "channel",
            "operationBindings": "operation",
            "messageBindings": "message",
        }.get(tokens[1])
    if not tokens or tokens[-1] != "bindings" or len(tokens) < 3:
        return None
    parent = tokens[:-1]
    if parent[-1] in ("publish", "subscribe"):
        return "operation"
    if parent[-1] == "message" or parent[-2] in ("messages", "messageTraits", "oneOf"):
        return "message"
    if parent[-2] == "servers":
        return "server"
    if parent[-2] == "channels":
        return "channel"
    if parent[-2] in ("operations", "operationTraits"):
        return "operation"
    if parent[-2] == "traits" and len(parent) >= 4:
        owner = parent[-3]
        grand = parent[-4]
        return (
            "operation"
            if owner in ("publish", "subscribe") or grand == "operations"
            else ("message")
        )
    return None


def _bindings_objects(doc: Document) -> list[tuple[str, Any, Ref]]:
    """(kind, value, place) of every bindings object written in the root file."""
    found: list[tuple[str, Any, Ref]] = []
    root = Ref(doc.root.path)
    stack: list[tuple[Any, list[str]]] = [(doc.data, [])]
    while stack:
        value, tokens = stack.pop()
        kind = _kind(tokens)
        if kind is not None:
            found.append((kind, value, root.child(*tokens)))
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in _NOT_BINDINGS and isinstance(item, dict | list):
                    stack.append((item, [*tokens, key]))
        elif isinstance(value, list):
            stack.extend(
                (item, [*tokens, str(index)])
                for index, item in enumerate(value)
                if isinstance(item, dict | list)
            )
    return found


#: Keys under which no bindings object is looked for.
_NOT_BINDINGS = frozenset({"payload", "headers", "schema", "examples", "$ref"})


def check_bindings(doc: Document) -> list[Problem]:
    """Every MQTT and NATS binding against its specification; `x-jetstream` extensions."""
    problems: list[Problem] = []
    for kind, value, at in _bindings_objects(doc):
        try:
            bindings, at = doc.resolve(value, at)
        except SpecError:
            continue  # reported by the check of references
        if not isinstance(bindings, dict):
            continue
        for protocol in ("mqtt", "nats"):
            if protocol not in bindings:
                continue
            try:
                binding, binding_at = doc.resolve(bindings[protocol], at.child(protocol))
            except SpecError:
                continue
            if not isinstance(binding, dict):
                continue  # the structure check says it must be a mapping
            versions = _FIELDS[(protocol, kind)]
            version = binding.get("bindingVersion")
            version = version if version in versions else max(versions)
            problems.extend(_validator(protocol, kind, version).problems(doc, binding, binding_at))
    problems.extend(_check_jetstream(doc))
    return problems


def _check_jetstream(doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    root = Ref(doc.root.path)
    places: list[tuple[Any, Ref]] = []
    operations = doc.data.get("operations")
    if isinstance(operations, dict):
        places.extend((value, root.child("operations", key)) for key, value in operations.items())
    channels = doc.data.get("channels")
    if isinstance(channels, dict) and not str(doc.data.get("asyncapi", "")).startswith("3."):
        for key, channel in channels.items():
            if isinstance(channel, dict):
                places.extend(
                    (channel[verb], root.child("channels", key, verb))
                    for verb in ("publish", "subscribe")
                    if verb in channel
                )
    for value, at in places:
        try:
            operation, at = doc.resolve(value, at)
        except SpecError:
            continue
        if isinstance(operation, dict) and "x-jetstream" in operation:
            problems.extend(
                _jetstream_validator().problems(
                    doc, operation["x-jetstream"], at.child("x-jetstream")
                )
            )
    return problems
