"""Payload kinds: how the bytes of a message become what its handler receives.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.

- `json`: the bytes are JSON, validated into the message's model (the default).
- `text`: the bytes are UTF-8 text; the handler gets a `str`.
- `bytes`: the handler gets the bytes as they came.
- `msgpack`: the bytes are MessagePack, validated into the message's model; the
  `msgpack` package is imported only when such a message is first seen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic_core
from pydantic import TypeAdapter

PayloadKind = Literal["json", "text", "bytes", "msgpack"]


class PayloadError(ValueError):
    """The bytes of a message cannot be read as its payload kind says."""


@dataclass(frozen=True)
class Accepted:
    """One message a receive operation accepts: its type and its payload kind.

    `match` names fields whose values tell this message apart from the operation's
    others (a `const` or `enum` in its schema): a JSON or MessagePack object whose
    field holds one of the values is this message, and only this one is tried.
    """

    type: Any
    kind: PayloadKind = "json"
    match: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(getattr(self.type, "__name__", self.type))

    def decoder(self) -> Callable[[bytes], Any]:
        """A function from the payload's bytes to the validated message.

        It raises ValueError (pydantic.ValidationError or PayloadError) when the bytes
        are not this message.
        """
        if self.kind == "bytes":
            return _as_bytes
        adapter: TypeAdapter[Any] = TypeAdapter(self.type)
        if self.kind == "json":
            return adapter.validate_json
        if self.kind == "text":
            validate_text = adapter.validate_python

            def decode_text(payload: bytes) -> Any:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise PayloadError(f"not UTF-8 text: {exc}") from exc
                return validate_text(text)

            return decode_text
        validate = adapter.validate_python

        def decode_msgpack(payload: bytes) -> Any:
            return validate(unpack_msgpack(payload))

        return decode_msgpack

    def read(self, payload: bytes) -> Any:
        """The payload as plain data, for `match`: None when it cannot be read."""
        try:
            if self.kind == "json":
                return pydantic_core.from_json(payload)
            if self.kind == "msgpack":
                return unpack_msgpack(payload)
        except ValueError:
            return None
        return None

    def matches(self, data: Any) -> bool | None:
        """Whether `data` is this message by its `match` fields; None when they do not
        say (no `match`, or `data` is not an object holding them)."""
        if not self.match or not isinstance(data, dict):
            return None
        for name, values in self.match.items():
            if name not in data:
                return None
            if data[name] not in values:
                return False
        return True


def _as_bytes(payload: bytes) -> bytes:
    return payload


def unpack_msgpack(payload: bytes) -> Any:
    """MessagePack bytes as Python data; raises PayloadError when they are not."""
    msgpack = importlib.import_module("msgpack")
    try:
        return msgpack.unpackb(payload)
    except Exception as exc:  # msgpack raises several kinds, ValueError and others
        raise PayloadError(f"not MessagePack: {exc}") from exc


def encode(message: Any, kind: PayloadKind = "json") -> bytes:
    """A message as the bytes of its payload kind, models' fields named as in the
    spec."""
    if kind == "json":
        return pydantic_core.to_json(message, by_alias=True, exclude_none=True)
    if kind == "bytes":
        return bytes(message)
    if kind == "text":
        return str(message).encode("utf-8")
    msgpack = importlib.import_module("msgpack")
    data = pydantic_core.to_jsonable_python(message, by_alias=True, exclude_none=True)
    packed: bytes = msgpack.packb(data)
    return packed
