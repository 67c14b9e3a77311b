"""The version-neutral model of an API that the templates are rendered from.

Names here are the spec's own (`deviceId`, `receiveTelemetry`); turning them into Python
identifiers is the render stage's job. `action` is always from the application's view:
`receive` means the generated service subscribes, `send` means it publishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from asyncgen.asyncapi import RAW_TYPES as RAW_TYPES
from asyncgen.asyncapi import PayloadKind as PayloadKind
from asyncgen.asyncapi import payload_kind as payload_kind
from asyncgen.errors import Location

Action = Literal["send", "receive"]


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
    #: False when the validate stage found the payload does not match its schema.
    fits: bool = True


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
