"""The version-neutral model of an API that the templates are rendered from.

Names here are the spec's own (`deviceId`, `receiveTelemetry`); turning them into Python
identifiers is the render stage's job. `action` is always from the application's view:
`receive` means the generated service subscribes, `send` means it publishes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from asyncgen.errors import Location
from asyncgen.model.formats import schema_dialect

Action = Literal["send", "receive"]
#: How a message's bytes become what its handler receives: JSON validated into the
#: payload's model, text (`str`), the bytes as they came, or MessagePack validated into
#: the payload's model.
PayloadKind = Literal["json", "text", "bytes", "msgpack"]

_PARAM = re.compile(r"\{([^{}]+)\}")


def is_json_schema_format(schema_format: Any) -> bool:
    """Whether a `schemaFormat` names AsyncAPI's Schema Object or JSON Schema."""
    return isinstance(schema_format, str) and schema_dialect(schema_format) == "jsonschema"


_MSGPACK_TYPES = {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
_TEXT_TYPES = {"application/xml", "application/yaml", "application/x-yaml"}


def payload_kind(content_type: str | None) -> PayloadKind:
    """How a message of `content_type` is decoded (no content type: JSON, AsyncAPI's default).

    JSON (`application/json`, `*/*+json`) and MessagePack payloads become models of their
    schema; other text (`text/*`, XML, YAML) arrives as `str`; anything else
    (`application/octet-stream`, Protobuf, Avro's binary encoding) as `bytes`.
    """
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media in ("application/json", "text/json") or media.endswith("+json"):
        return "json"
    if media in _MSGPACK_TYPES or media.endswith("+msgpack"):
        return "msgpack"
    if media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+xml", "+yaml")):
        return "text"
    return "bytes"


#: The Python type a handler receives for the payload kinds that have no model.
RAW_TYPES: dict[PayloadKind, str] = {"text": "str", "bytes": "bytes"}


def regex_engine(pattern: str) -> tuple[str | None, str]:
    """The pydantic regex engine that can use `pattern` ("rust-regex", else "python-re"),
    or None and why neither can."""
    import pydantic_core

    try:
        pydantic_core.SchemaValidator(pydantic_core.core_schema.str_schema(pattern=pattern))
    except pydantic_core.SchemaError:
        pass
    else:
        return "rust-regex", ""
    try:
        re.compile(pattern)
    except re.error as exc:
        return None, str(exc)
    return "python-re", ""


def address_parameters(address: str) -> list[str]:
    """The `{name}` parameters of an address, in order of appearance."""
    return _PARAM.findall(address)


@dataclass
class Server:
    key: str
    host: str
    protocol: str
    protocol_version: str | None = None
    pathname: str | None = None
    description: str | None = None
    bindings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Parameter:
    name: str
    description: str | None = None
    enum: list[str] | None = None
    default: str | None = None
    examples: list[str] = field(default_factory=list)
    pattern: str | None = None
    #: `x-asyncgen-identity`: the parameter is the client's user name or client id.
    identity: Literal["username", "clientId"] | None = None


@dataclass
class Example:
    name: str | None
    payload: Any
    headers: dict[str, Any] | None = None
    has_payload: bool = True


@dataclass
class Message:
    """A message; `payload` and `headers` name definitions in `Api.schemas`."""

    key: str
    name: str
    title: str | None = None
    summary: str | None = None
    description: str | None = None
    content_type: str = "application/json"
    payload: str | None = None
    headers: str | None = None
    examples: list[Example] = field(default_factory=list)
    location: Location | None = None

    @property
    def kind(self) -> PayloadKind:
        return payload_kind(self.content_type)


@dataclass
class Channel:
    key: str
    address: str | None
    parameters: list[Parameter] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    description: str | None = None
    bindings: dict[str, Any] = field(default_factory=dict)
    location: Location | None = None


@dataclass
class Reply:
    """Where and what a request/reply operation answers (AsyncAPI 3.0 `reply`)."""

    channel: Channel | None
    messages: list[Message]
    address_location: str | None = None


@dataclass
class Operation:
    key: str
    action: Action
    channel: Channel
    messages: list[Message]
    summary: str | None = None
    description: str | None = None
    bindings: dict[str, Any] = field(default_factory=dict)
    reply: Reply | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    location: Location | None = None

    @property
    def kind(self) -> PayloadKind:
        """What its handler receives: its messages' payload kind; the bytes as they came
        when it names no message or its messages are of different kinds."""
        kinds = {message.kind for message in self.messages}
        return kinds.pop() if len(kinds) == 1 else "bytes"

    def binding(self, protocol: str, name: str, default: Any = None) -> Any:
        value = self.bindings.get(protocol)
        if isinstance(value, dict):
            return value.get(name, default)
        return default


@dataclass
class Api:
    title: str
    version: str
    asyncapi: str
    description: str | None = None
    default_content_type: str = "application/json"
    servers: list[Server] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    #: JSON Schema definitions by name; refs between them read `#/$defs/<name>`.
    schemas: dict[str, Any] = field(default_factory=dict)
