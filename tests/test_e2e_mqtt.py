"""End to end: generate the MQTT example, run it against a real mosquitto, publish to it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    EXAMPLES,
    Listener,
    Mosquitto,
    ServiceProcess,
    project_with_handlers,
    read_records,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PACKAGE = "iot_device_management"

RECORDING_HANDLER = """
import json
import os

from {package}._generated import models
from {package}._generated.channels import {params_class}
from {package}._generated.handlers import MessageContext


async def handle(
    message: models.{model}, params: {params_class}, context: MessageContext
) -> None:
    record = {{"operation": context.operation, "topic": context.topic,
              "params": params.model_dump(by_alias=True),
              "message": message.model_dump(mode="json", by_alias=True)}}
    with open(os.environ["RECORD_FILE"], "a") as stream:
        stream.write(json.dumps(record) + "\\n")
"""


def spec_examples() -> list[tuple[str, dict[str, Any]]]:
    """(message name, example payload) for the messages the example service receives."""
    spec = yaml.safe_load((EXAMPLES / "mqtt" / "asyncapi.yaml").read_text())
    messages = spec["components"]["messages"]
    return [
        (name, example["payload"])
        for name in ("TelemetryData", "DeviceStatus")
        for example in messages[name]["examples"]
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("mqtt") / "iot"
    return project_with_handlers(
        output,
        "mqtt",
        {
            module: RECORDING_HANDLER.format(package=PACKAGE, model=model, params_class=params)
            for module, model, params in (
                ("receive_telemetry", "TelemetryPayload", "DeviceTelemetryParams"),
                ("receive_status", "DeviceStatus", "DeviceStatusParams"),
            )
        },
    )


def start_service(project: Path, broker: Mosquitto, record: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(
        project,
        PACKAGE,
        {
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(broker.port),
            "MQTT_CLIENT_ID": f"iot-{time.monotonic_ns()}",
            "RECORD_FILE": str(record),
            "RECONNECT_MAX_DELAY": "1",
            **env,
        },
    )


@pytest.mark.parametrize(
    ("mqtt_client", "event_loop"),
    [("aiomqtt", "asyncio"), ("gmqtt", "asyncio"), ("gmqtt", "uvloop")],
)
def test_service_handles_every_example_with_its_parameters(
    project: Path, mosquitto: Mosquitto, tmp_path: Path, mqtt_client: str, event_loop: str
) -> None:
    record = tmp_path / "record.jsonl"
    service = start_service(
        project, mosquitto, record, MQTT_CLIENT=mqtt_client, EVENT_LOOP=event_loop
    )
    listener = Listener(mosquitto.port, [])
    try:
        service.wait_for("subscribed to")
        examples = spec_examples()
        assert examples, "the example spec has message examples"
        for index, (name, payload) in enumerate(examples):
            kind = "telemetry" if name == "TelemetryData" else "status"
            listener.publish(f"devices/dev-{index}/{kind}", json.dumps(payload).encode())
        records = read_records(record, len(examples))
        assert [r["params"]["deviceId"] for r in records] == [
            f"dev-{i}" for i in range(len(examples))
        ]
        assert [r["operation"] for r in records] == [
            "receiveTelemetry" if name == "TelemetryData" else "receiveStatus"
            for name, _ in examples
        ]
        assert records[0]["message"]["deviceId"] == examples[0][1]["deviceId"]
    finally:
        listener.close()
        assert service.stop() == 0, service.output()


@pytest.mark.parametrize("mqtt_client", ["aiomqtt", "gmqtt"])
def test_bad_messages_are_dead_lettered_and_service_carries_on(
    project: Path, mosquitto: Mosquitto, tmp_path: Path, mqtt_client: str
) -> None:
    record = tmp_path / "record.jsonl"
    service = start_service(project, mosquitto, record, MQTT_CLIENT=mqtt_client)
    listener = Listener(mosquitto.port, [f"{PACKAGE}/dead-letter"])
    try:
        service.wait_for("subscribed to")
        _, valid = spec_examples()[0]
        violation = {**valid, "sensors": {"humidity": 250}}
        listener.publish("devices/dev-1/telemetry", b"{not json")
        listener.publish("devices/dev-2/telemetry", json.dumps(violation).encode())
        dead = listener.wait_for(2)
        envelopes = [json.loads(payload) for _, payload in dead]
        assert [e["topic"] for e in envelopes] == [
            "devices/dev-1/telemetry",
            "devices/dev-2/telemetry",
        ]
        assert envelopes[0]["payload"] == "{not json"
        assert "humidity" in envelopes[1]["reason"]
        assert json.loads(envelopes[1]["payload"]) == violation
        listener.publish("devices/dev-3/telemetry", json.dumps(valid).encode())
        records = read_records(record, 1)
        assert records[0]["params"]["deviceId"] == "dev-3"
        assert "rejected" in service.output()
    finally:
        listener.close()
        assert service.stop() == 0, service.output()


def test_service_reconnects_after_broker_restart(
    project: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    service = start_service(project, mosquitto, record)
    try:
        service.wait_for("subscribed to")
        mosquitto.stop()
        service.wait_for("reconnecting in")
        mosquitto.start()
        service.wait_for("subscribed to", count=2, timeout=30)
        listener = Listener(mosquitto.port, [])
        try:
            _, valid = spec_examples()[0]
            listener.publish("devices/after-restart/telemetry", json.dumps(valid).encode())
            records = read_records(record, 1)
            assert records[0]["params"]["deviceId"] == "after-restart"
        finally:
            listener.close()
    finally:
        assert service.stop() == 0, service.output()
