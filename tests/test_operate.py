"""Operating a generated service against real brokers: readiness across a broker restart,
metrics, the lifespan's dependencies and background work, and messages posted over HTTP."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    EXAMPLES,
    Listener,
    Mosquitto,
    NatsServer,
    ServiceProcess,
    free_port,
    project_with_handlers,
    read_records,
)
from prometheus_client.parser import text_string_to_metric_families
from runtime_fakes import Settings, nats_service

from asyncgen.runtime.core import StartupError
from asyncgen.runtime.nats import websocket_support

pytestmark = [pytest.mark.broker]

MQTT_PACKAGE = "iot_device_management"
NATS_PACKAGE = "iot_device_management_nats"
TOKEN = "s3cret"

# The handler writes through the database the lifespan opened.
MQTT_TELEMETRY_HANDLER = """
import json

from {package}._generated import models
from {package}._generated.channels import DeviceTelemetryParams
from {package}._generated.handlers import MessageContext


async def handle(
    message: models.TelemetryPayload, params: DeviceTelemetryParams, context: MessageContext
) -> None:
    context.state.db.write(json.dumps({{
        "operation": context.operation, "topic": context.topic,
        "params": params.model_dump(by_alias=True), "transport": context.transport,
    }}))
"""

MQTT_LIFESPAN = """
from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from {package}._generated import models

if TYPE_CHECKING:
    from {package}._generated.service import Service


def event(text: str) -> None:
    with open(os.environ["EVENTS_FILE"], "a") as stream:
        stream.write(text + "\\n")


class Database:
    def __init__(self, path: str) -> None:
        self.stream = open(path, "a")

    def write(self, line: str) -> None:
        self.stream.write(line + "\\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


@dataclass
class State:
    db: Database


async def heartbeats(service: Service) -> None:
    beat = models.SystemHeartbeat.model_validate(
        {{"serviceId": "svc", "timestamp": "2024-01-15T10:30:00Z", "uptime": 1,
          "status": "healthy"}}
    )
    try:
        while True:
            if service.connected.is_set():
                await service.publishers.send_heartbeat(beat)
                event("beat")
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        event("heartbeats stopped")
        raise


@asynccontextmanager
async def lifespan(service: Service) -> AsyncIterator[State]:
    db = Database(os.environ["RECORD_FILE"])
    event("opened")
    service.start_background(heartbeats(service))
    try:
        yield State(db)
    finally:
        db.close()
        event("closed")
"""

NATS_HANDLER = """
import json
import os

from {package}._generated import models
from {package}._generated.channels import TemperatureReadingsParams
from {package}._generated.handlers import MessageContext


async def handle(
    message: models.TemperatureReading, params: TemperatureReadingsParams,
    context: MessageContext,
) -> None:
    with open(os.environ["RECORD_FILE"], "a") as stream:
        stream.write(json.dumps({{
            "operation": context.operation, "subject": context.subject,
            "params": params.model_dump(by_alias=True), "transport": context.transport,
        }}) + "\\n")
"""


def example(protocol: str, message: str) -> dict[str, Any]:
    spec = yaml.safe_load((EXAMPLES / protocol / "asyncapi.yaml").read_text())
    payload: dict[str, Any] = spec["components"]["messages"][message]["examples"][0]["payload"]
    return payload


def request(
    port: int, path: str, body: bytes | None = None, token: str | None = None
) -> tuple[int, Any]:
    """(status, body as JSON when it is JSON) of a GET, or a POST when there is a body."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_for_status(port: int, path: str, status: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    seen: Any = None
    while time.monotonic() < deadline:
        try:
            seen = request(port, path)[0]
        except OSError as exc:  # not listening yet
            seen = exc
        if seen == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"GET {path}: expected {status}, last saw {seen}")


def assert_readiness_follows(port: int, broker: Mosquitto | NatsServer) -> None:
    """/readyz: 200, 503 while the broker is stopped, 200 once it is back; /healthz
    200 throughout."""
    wait_for_status(port, "/readyz", 200)
    broker.stop()
    wait_for_status(port, "/readyz", 503)
    assert request(port, "/healthz")[0] == 200
    broker.start()
    wait_for_status(port, "/readyz", 200)
    assert request(port, "/healthz")[0] == 200


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no {name}{labels} in\n{text}")


@pytest.fixture(scope="module")
def mqtt_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = project_with_handlers(
        tmp_path_factory.mktemp("operate-mqtt") / "iot",
        "mqtt",
        {"receive_telemetry": MQTT_TELEMETRY_HANDLER.format(package=MQTT_PACKAGE)},
    )
    lifespan = output / "src" / MQTT_PACKAGE / "lifespan.py"
    lifespan.write_text(MQTT_LIFESPAN.format(package=MQTT_PACKAGE))
    return output


def start_mqtt(project: Path, broker: Mosquitto, tmp_path: Path, http_port: int) -> ServiceProcess:
    return ServiceProcess(
        project,
        MQTT_PACKAGE,
        {
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(broker.port),
            "MQTT_CLIENT_ID": f"iot-{time.monotonic_ns()}",
            "RECORD_FILE": str(tmp_path / "records.jsonl"),
            "EVENTS_FILE": str(tmp_path / "events.txt"),
            "RECONNECT_INITIAL_DELAY": "0.1",
            "RECONNECT_MAX_DELAY": "0.5",
            "HTTP_PORT": str(http_port),
            "HTTP_TOKEN": TOKEN,
        },
    )


def test_mqtt_readyz_follows_the_broker_and_posted_messages_reach_the_handler(
    mqtt_project: Path, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    port = free_port()
    service = start_mqtt(mqtt_project, broker, tmp_path, port)
    try:
        assert_readiness_follows(port, broker)

        valid = json.dumps(example("mqtt", "TelemetryData")).encode()
        path = "/operations/receiveTelemetry?deviceId=dev-7"
        assert request(port, path, valid, TOKEN) == (
            202,
            {"operation": "receiveTelemetry", "status": "handled"},
        )
        [record] = read_records(tmp_path / "records.jsonl", 1)
        assert record == {
            "operation": "receiveTelemetry",
            "topic": "devices/dev-7/telemetry",
            "params": {"deviceId": "dev-7"},
            "transport": "http",
        }
        invalid = {**example("mqtt", "TelemetryData"), "sensors": {"humidity": 250}}
        status, body = request(port, path, json.dumps(invalid).encode(), TOKEN)
        assert status == 400
        assert ["sensors", "humidity"] in [error["loc"] for error in body["errors"]]
        assert request(port, path, valid, "wrong")[0] == 401
        assert request(port, path, valid)[0] == 401
    finally:
        assert service.stop() == 0, service.output()
        broker.stop()


def test_mqtt_metrics_lifespan_and_background_work(
    mqtt_project: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    port = free_port()
    listener = Listener(mosquitto.port, ["system/heartbeat", f"{MQTT_PACKAGE}/dead-letter"])
    service = start_mqtt(mqtt_project, mosquitto, tmp_path, port)
    try:
        service.wait_for("subscribed to")
        valid = example("mqtt", "TelemetryData")
        invalid = {**valid, "sensors": {"humidity": 250}}
        for index in range(4):
            listener.publish(f"devices/dev-{index}/telemetry", json.dumps(valid).encode())
        for index in range(3):
            listener.publish(f"devices/bad-{index}/telemetry", json.dumps(invalid).encode())
        records = read_records(tmp_path / "records.jsonl", 4)
        assert {record["transport"] for record in records} == {"mqtt"}
        deadline = time.monotonic() + 15
        while True:  # the handlers ran, the dead letters went out: wait for the beats
            messages = list(listener.messages)
            beats = [m for m in messages if m[0] == "system/heartbeat"]
            dead = [m for m in messages if m[0].endswith("dead-letter")]
            if (len(beats) >= 2 and len(dead) >= 3) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(beats) >= 2 and len(dead) == 3, messages
        operation = {"operation": "receiveTelemetry"}
        # A dead letter counts once the broker acknowledged it, which may come just
        # after the listener got it.
        deadline = time.monotonic() + 10
        while True:
            _, text = request(port, "/metrics")
            counted = metric(text, "asyncgen_messages_dead_lettered_total", **operation)
            if counted >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert metric(text, "asyncgen_messages_received_total", **operation) == 7
        assert metric(text, "asyncgen_messages_handled_total", **operation) == 4
        assert metric(text, "asyncgen_messages_invalid_total", **operation) == 3
        assert metric(text, "asyncgen_messages_failed_total", **operation) == 0
        assert metric(text, "asyncgen_messages_dead_lettered_total", **operation) == 3
        assert metric(text, "asyncgen_handler_duration_seconds_count", **operation) == 4
        status = {"operation": "receiveStatus"}
        assert metric(text, "asyncgen_messages_received_total", **status) == 0
        assert metric(text, "asyncgen_connected") == 1
    finally:
        listener.close()
        assert service.stop() == 0, service.output()
    events = (tmp_path / "events.txt").read_text().splitlines()
    assert events[0] == "opened"
    assert events.count("beat") >= 2
    # Background work stops at SIGTERM, before the lifespan closes the database.
    assert events[-2:] == ["heartbeats stopped", "closed"], events
    assert "background task" not in service.output()


@pytest.fixture(scope="module")
def nats_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_with_handlers(
        tmp_path_factory.mktemp("operate-nats") / "iot",
        "nats",
        {"receive_temperature_reading": NATS_HANDLER.format(package=NATS_PACKAGE)},
    )


def test_nats_readyz_follows_the_server_and_posted_messages_reach_the_handler(
    nats_project: Path, tmp_path: Path
) -> None:
    server = NatsServer(tmp_path / "nats")
    server.start()
    port = free_port()
    record = tmp_path / "records.jsonl"
    service = ServiceProcess(
        nats_project,
        NATS_PACKAGE,
        {
            "NATS_URL": server.url,
            "RECORD_FILE": str(record),
            "NATS_RECONNECT_WAIT": "0.1",
            "NATS_RECONNECT_MAX_WAIT": "0.5",
            "HTTP_PORT": str(port),
            "HTTP_TOKEN": TOKEN,
        },
    )
    try:
        assert_readiness_follows(port, server)

        valid = example("nats", "TemperatureReading")
        path = "/operations/receiveTemperatureReading?deviceId=sensor-9"
        assert request(port, path, json.dumps(valid).encode(), TOKEN)[0] == 202
        [handled] = read_records(record, 1)
        assert handled == {
            "operation": "receiveTemperatureReading",
            "subject": "sensors.temperature.sensor-9",
            "params": {"deviceId": "sensor-9"},
            "transport": "http",
        }
        status, body = request(port, path, json.dumps({**valid, "value": "hot"}).encode(), TOKEN)
        assert status == 400
        assert ["value"] in [error["loc"] for error in body["errors"]]
        assert request(port, path, json.dumps(valid).encode(), "wrong")[0] == 401
        # An operation that replies answers with its reply.
        status, reply = request(
            port,
            "/operations/receiveStatusRequest?deviceId=sensor001",
            json.dumps(example("nats", "GetStatus")).encode(),
            TOKEN,
        )
        assert status == 200
        assert reply["deviceId"] == "sensor001"
        _, text = request(port, "/metrics")
        labels = {"operation": "receiveTemperatureReading"}
        assert metric(text, "asyncgen_messages_handled_total", **labels) == 1
        assert metric(text, "asyncgen_messages_invalid_total", **labels) == 1
        assert metric(text, "asyncgen_reconnects_total") == 1
    finally:
        assert service.stop() == 0, service.output()
        server.stop()


def test_a_nats_service_connects_to_a_websocket_server(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", websocket=True)
    server.start()

    async def scenario() -> bool:
        settings = Settings(nats_url=f"ws://127.0.0.1:{server.websocket_port}")
        service = nats_service([], settings)
        running = asyncio.create_task(service.run())
        try:
            await asyncio.wait_for(service.connected.wait(), 15)
            return service.connected.is_set()
        finally:
            service.stop()
            await running

    try:
        assert asyncio.run(scenario())
    finally:
        server.stop()


def test_websocket_servers_without_aiohttp_are_refused_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "aiohttp" else real_find_spec(name, *args),
    )
    with pytest.raises(StartupError, match=r"WebSocket servers \(127.0.0.1:4223\).*aiohttp"):
        websocket_support(Settings(nats_url="nats://127.0.0.1:4222, ws://127.0.0.1:4223"))
    websocket_support(Settings(nats_url="nats://127.0.0.1:4222"))
