"""Facts of AsyncAPI and of the target protocols that the validate stage checks and the
later stages rely on: address parameters, schema formats, regular expressions, how an
address becomes a NATS subject, which server protocols asyncgen generates for.

It sits below validate, model and render, and imports none of them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

Protocol = Literal["mqtt", "nats"]

#: Server `protocol` values and the target each one means.
PROTOCOLS: dict[str, Protocol] = {
    "mqtt": "mqtt",
    "mqtts": "mqtt",
    "secure-mqtt": "mqtt",
    "mqtt5": "mqtt",
    "nats": "nats",
    "tls": "nats",
}

#: How a message's bytes become what its handler receives: JSON validated into the
#: payload's model, text (`str`), the bytes as they came, or MessagePack validated into
#: the payload's model.
PayloadKind = Literal["json", "text", "bytes", "msgpack"]

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


_PARAM = re.compile(r"\{([^{}]+)\}")

_JSON_SCHEMA_FORMATS = re.compile(
    r"^application/(vnd\.aai\.asyncapi(\+json|\+yaml)?|schema\+json|schema\+yaml)(;.*)?$"
)


def is_json_schema_format(schema_format: Any) -> bool:
    """Whether a `schemaFormat` names AsyncAPI's Schema Object or JSON Schema."""
    return isinstance(schema_format, str) and _JSON_SCHEMA_FORMATS.match(schema_format) is not None


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


def subject_address(address: str, protocol: Protocol) -> str:
    """The address as the protocol writes it: NATS subjects use `.` between tokens.

    An address written with `/` is mapped the way nats-server's MQTT gateway maps an
    MQTT topic, so one spec serves MQTT devices and NATS services alike.
    """
    if protocol == "nats" and "/" in address:
        return address.strip("/").replace("/", ".")
    return address


#: What `address_problem` says of a NATS subject with an empty token: nats-py refuses
#: such a subject when subscribing, so it cannot be generated.
EMPTY_TOKEN = "it has an empty token"


def address_problem(address: str, protocol: Protocol) -> str | None:
    """What makes `address` (its `{parameters}` aside) unusable with `protocol`, if anything."""
    names = address_parameters(address)
    literal = re.sub(r"\{[^{}]+\}", "x", address)
    if protocol == "mqtt":
        if "/" in "".join(names):
            return "a parameter name holds `/`"
        if "+" in literal or "#" in literal:
            return "`+` and `#` are wildcards, not part of a topic name"
        if "\x00" in literal:
            return "it holds a NUL character"
        return None
    if any(separator in name for name in names for separator in "./"):
        return "a parameter name holds `.` or `/`"
    subject = subject_address(literal, protocol)
    if any(character.isspace() for character in subject):
        return "subjects cannot hold white space"
    if any(not token for token in subject.split(".")):
        return EMPTY_TOKEN
    if "*" in subject or ">" in subject:
        return "`*` and `>` are wildcards, not part of a subject"
    return None


def server_protocol(protocols: list[str], requested: Protocol | None = None) -> Protocol | None:
    """The target: the one asked for, else that of the first server asyncgen generates
    for (given the servers' `protocol` values in order), else MQTT when there are no
    servers; None when every server speaks something else."""
    if requested is not None:
        return requested
    if not protocols:
        return "mqtt"
    for protocol in protocols:
        if protocol in PROTOCOLS:
            return PROTOCOLS[protocol]
    return None
