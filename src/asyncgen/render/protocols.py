"""What the generator knows of each protocol, in one place per protocol.

Templates and the context read a protocol's words, address syntax and runtime pieces
from its `ProtocolProfile` instead of branching on the protocol's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from asyncgen.asyncapi import Protocol, address_parameters, subject_address

#: The MQTT client libraries a generated MQTT service can run on (its MQTT_CLIENT).
MqttClientName = Literal["aiomqtt", "gmqtt"]
MQTT_CLIENTS: tuple[MqttClientName, ...] = ("aiomqtt", "gmqtt")


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
    #: Optional extras of a generated project besides `uvloop`: name -> requirement.
    extras: tuple[tuple[str, str], ...] = ()
    #: The setting that names where dead letters go.
    dead_letter_setting: str = ""
    #: Arguments of the generated `Publishers(service...)` after the service, as source.
    publishers_args: str = ""

    def dead_letter_address(self, package: str) -> str:
        """Where a generated service dead-letters by default (its settings' default)."""
        return f"{package}{self.separator}dead-letter"

    def dead_letter_stream(self, package: str) -> str:
        """The JetStream stream that keeps a NATS service's dead letters by default."""
        return f"{package}_dead_letters".upper()

    def address_filter(self, address: str, bound: Mapping[str, str] | None = None) -> str:
        """The subscription (or access-rule filter) of an address template: each level
        holding a parameter becomes the one-level wildcard, unless every parameter in it
        has a value in `bound`.

        `devices/{deviceId}/telemetry` -> `devices/+/telemetry`, or `devices.*.telemetry`;
        with `{"deviceId": "%c"}`, `devices/%c/telemetry`.
        """
        values = bound or {}
        levels = []
        for level in subject_address(address, self.name).split(self.separator):
            names = address_parameters(level)
            if names and all(name in values for name in names):
                for name in names:
                    level = level.replace(f"{{{name}}}", values[name])
            elif names:
                level = self.wildcard
            levels.append(level)
        return self.separator.join(levels)


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
    runtime_adapters=("mqtt.py", "aiomqtt_client.py", "gmqtt_client.py"),
    client_requirement="aiomqtt>=2.5,<3",
    # The adapter relies on gmqtt 0.8's package handler (see gmqtt_client.py).
    extras=(("gmqtt", "gmqtt>=0.8,<0.9"),),
    dead_letter_setting="mqtt_dead_letter_topic",
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
    publishers_args=", settings.nats_request_timeout",
)

PROFILES: dict[Protocol, ProtocolProfile] = {"mqtt": MQTT, "nats": NATS}

#: Runtime modules every generated project holds, whatever its protocol.
RUNTIME_COMMON = (
    "__init__.py",
    "addresses.py",
    "commands.py",
    "core.py",
    "deadletters.py",
    "eventloop.py",
    "flow.py",
    "http.py",
    "logs.py",
    "metrics.py",
    "outbox.py",
    "payloads.py",
    "routing.py",
    "spool.py",
    "tracing.py",
)
