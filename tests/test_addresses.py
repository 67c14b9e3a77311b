"""Address translation: spec addresses to MQTT filters / NATS subjects, parse and format."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pydantic
import pytest
from conftest import EXAMPLES
from typer.testing import CliRunner

from asyncgen.asyncapi import subject_address
from asyncgen.cli import app
from asyncgen.render.context import subscription_for


@pytest.mark.parametrize(
    ("address", "protocol", "expected"),
    [
        ("devices/{deviceId}/telemetry", "mqtt", "devices/+/telemetry"),
        ("alerts/critical", "mqtt", "alerts/critical"),
        ("a/{x}/b/{y}", "mqtt", "a/+/b/+"),
        ("light/{id}-status", "mqtt", "light/+"),
        ("sensors.temperature.{deviceId}", "nats", "sensors.temperature.*"),
        ("devices/{deviceId}/telemetry", "nats", "devices.*.telemetry"),
        ("/rooms/{roomId}", "nats", "rooms.*"),
    ],
)
def test_subscription_replaces_parameters_with_single_level_wildcards(
    address: str, protocol: str, expected: str
) -> None:
    assert subscription_for(address, protocol) == expected  # type: ignore[arg-type]


def test_mqtt_topics_map_to_nats_subjects_like_the_gateway() -> None:
    assert subject_address("sensors/temp/room1", "nats") == "sensors.temp.room1"
    assert subject_address("sensors.temp.room1", "nats") == "sensors.temp.room1"
    assert subject_address("sensors/temp/room1", "mqtt") == "sensors/temp/room1"


@pytest.fixture(scope="module")
def channels() -> Iterator[ModuleType]:
    """The channels module of the committed MQTT golden record."""
    src = EXAMPLES / "mqtt" / "generated" / "src"
    sys.path.insert(0, str(src))
    try:
        from iot_device_management._generated import channels as module

        yield module
    finally:
        sys.path.remove(str(src))


def test_parse_extracts_parameters_by_their_spec_names(channels: ModuleType) -> None:
    params = channels.DEVICE_TELEMETRY.parse("devices/sensor-7/telemetry")
    assert params is not None
    assert params.model_dump(by_alias=True) == {"deviceId": "sensor-7"}


def test_parse_returns_none_for_another_channels_topic(channels: ModuleType) -> None:
    assert channels.DEVICE_TELEMETRY.parse("devices/sensor-7/status") is None
    assert channels.DEVICE_TELEMETRY.parse("devices/a/b/telemetry") is None
    assert channels.CRITICAL_ALERTS.parse("alerts/critical/extra") is None


def test_format_builds_the_topic(channels: ModuleType) -> None:
    assert channels.DEVICE_COMMANDS.build({"deviceId": "dev1"}) == "devices/dev1/commands"
    assert channels.CRITICAL_ALERTS.format(channels.NoParams()) == "alerts/critical"


@pytest.mark.parametrize("value", ["a/b", "+", "#", "dev#1", ""])
def test_format_refuses_values_that_would_change_the_topic(
    channels: ModuleType, value: str
) -> None:
    with pytest.raises((ValueError, pydantic.ValidationError)):
        channels.DEVICE_COMMANDS.build({"deviceId": value})


def test_subscription_of_generated_channel_uses_wildcards(channels: ModuleType) -> None:
    assert channels.DEVICE_TELEMETRY.subscription == "devices/+/telemetry"
    assert channels.SYSTEM_HEARTBEAT.subscription == "system/heartbeat"


@pytest.mark.parametrize(
    ("address", "subject"), [("/", "''"), ("a//b", "'a..b'"), ("a.{x}.", "'a.{x}.'")]
)
def test_an_address_that_maps_to_an_invalid_nats_subject_is_a_located_error(
    address: str, subject: str, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "asyncapi: 3.0.0\n"
        "info: {title: T, version: 1.0.0}\n"
        "channels:\n"
        "  bad:\n"
        f"    address: {address!r}\n"
        "    messages: {m: {payload: {type: string}}}\n"
        "operations:\n"
        "  onBad: {action: receive, channel: {$ref: '#/channels/bad'}}\n"
    )
    output = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["generate", str(spec), "-o", str(output), "--protocol", "nats"]
    )
    assert result.exit_code == 1, result.output
    assert f"{spec}:5:5 #/channels/bad: error: unsupported: address" in result.output
    assert f"the NATS subject {subject}, which is not valid: it has an empty token" in (
        result.output
    )
    assert not output.exists()
    mqtt = CliRunner().invoke(app, ["generate", str(spec), "-o", str(output)])
    assert mqtt.exit_code == 0, mqtt.output
