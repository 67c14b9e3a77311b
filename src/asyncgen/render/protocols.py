"""What the generator knows of each protocol, in one place per protocol.

Templates and the context read a protocol's words, address syntax and runtime pieces
from its `ProtocolProfile` instead of branching on the protocol's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from asyncgen.model.ir import address_parameters

Protocol = Literal["mqtt", "nats"]


@dataclass(frozen=True)
class ProtocolProfile:
    name: Protocol
    #: How people write the protocol's name.
    title: str
    #: What an address is called: "topic" or "subject".
    address_word: str
    #: What the service connects to: "broker" or "server".
    peer_word: str
    separator: str
    #: The wildcard of one level in a subscription.
    wildcard: str
    #: Characters a parameter value may not hold (the runtime's `Syntax.forbidden`).
    forbidden: frozenset[str]
    default_port: int
    #: The runtime's `addresses.Syntax` constant for this protocol's addresses.
    syntax: str
    #: The runtime module of the protocol's service, and the service class in it.
    runtime_module: str
    service_class: str
    #: Runtime modules a project of this protocol needs besides the common ones.
    runtime_adapters: tuple[str, ...]
    #: The client library a generated project depends on (a PEP 508 requirement).
    client_requirement: str
    #: The setting that names where dead letters go.
    dead_letter_setting: str = ""
    #: Arguments of the generated `Publishers(service...)` after the service, as source.
    publishers_args: str = ""
    #: The address as the protocol writes it.
    address: Callable[[str], str] = str
    #: What makes an address (its `{parameters}` aside) unusable, if anything.
    address_problem: Callable[[str], str | None] = lambda address: None


def _literal(address: str) -> str:
    """The address with an `x` in place of each parameter."""
    return re.sub(r"\{[^{}]+\}", "x", address)


def _mqtt_address_problem(address: str) -> str | None:
    literal = _literal(address)
    if "/" in "".join(address_parameters(address)):
        return "a parameter name holds `/`"
    if "+" in literal or "#" in literal:
        return "`+` and `#` are wildcards, not part of a topic name"
    if "\x00" in literal:
        return "it holds a NUL character"
    return None


def _nats_subject(address: str) -> str:
    """NATS subjects use `.` between tokens: an address written with `/` is mapped the
    way nats-server's MQTT gateway maps an MQTT topic, so one document serves MQTT
    devices and NATS services alike."""
    if "/" in address:
        return address.strip("/").replace("/", ".")
    return address


def _nats_address_problem(address: str) -> str | None:
    names = address_parameters(address)
    if any(separator in name for name in names for separator in "./"):
        return "a parameter name holds `.` or `/`"
    subject = _nats_subject(_literal(address))
    if any(character.isspace() for character in subject):
        return "subjects cannot hold white space"
    if any(not token for token in subject.split(".")):
        return "it has an empty token"
    if "*" in subject or ">" in subject:
        return "`*` and `>` are wildcards, not part of a subject"
    return None


MQTT = ProtocolProfile(
    name="mqtt",
    title="MQTT",
    address_word="topic",
    peer_word="broker",
    separator="/",
    wildcard="+",
    forbidden=frozenset("/+#\x00"),
    default_port=1883,
    syntax="MQTT_TOPIC",
    runtime_module="mqtt",
    service_class="MqttService",
    runtime_adapters=("mqtt.py", "aiomqtt_client.py"),
    client_requirement="aiomqtt>=2.5,<3",
    dead_letter_setting="mqtt_dead_letter_topic",
    address_problem=_mqtt_address_problem,
)

NATS = ProtocolProfile(
    name="nats",
    title="NATS",
    address_word="subject",
    peer_word="server",
    separator=".",
    wildcard="*",
    forbidden=frozenset(".*> \t\r\n\x00"),
    default_port=4222,
    syntax="NATS_SUBJECT",
    runtime_module="nats",
    service_class="NatsService",
    runtime_adapters=("nats.py",),
    client_requirement="nats-py>=2.7,<3",
    dead_letter_setting="nats_dead_letter_subject",
    address=_nats_subject,
    address_problem=_nats_address_problem,
    publishers_args=", settings.nats_request_timeout",
)

PROFILES: dict[Protocol, ProtocolProfile] = {"mqtt": MQTT, "nats": NATS}

#: Runtime modules every generated project holds, whatever its protocol.
RUNTIME_COMMON = (
    "__init__.py",
    "addresses.py",
    "core.py",
    "logs.py",
    "payloads.py",
    "routing.py",
)
