"""Dead letters against real brokers: payloads of about a megabyte under mosquitto's
`message_size_limit` and nats-server's `max_payload` all reach the dead-letter address or
the spool, and `python -m <package> dead-letters replay` puts dead-lettered originals
back through their handlers once these are fixed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from conftest import (
    EXAMPLES,
    Listener,
    Mosquitto,
    NatsServer,
    ServiceProcess,
    project_with_handlers,
    read_records,
)
from runtime_fakes import Calls, Reading, Settings, mqtt_route, mqtt_service

from asyncgen.runtime.aiomqtt_client import AiomqttClient
from asyncgen.runtime.commands import run_command
from asyncgen.runtime.deadletters import ADDRESS, OPERATION, REASON_CODE, parse_mqtt_topic
from asyncgen.runtime.mqtt import MemoryTransport
from asyncgen.runtime.payloads import Accepted
from asyncgen.runtime.spool import Spool

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MQTT_PACKAGE = "iot_device_management"
NATS_PACKAGE = "iot_device_management_nats"
MEGABYTE = 1_048_576

#: A handler that fails while the file FAIL_FLAG names exists, and records what it handled.
FLAKY_HANDLER = """
import json
import os
from pathlib import Path
from typing import Any


async def handle(message: Any, *rest: Any) -> None:
    if Path(os.environ["FAIL_FLAG"]).exists():
        raise RuntimeError("the database is down")
    record = {"operation": rest[-1].operation,
              "message": message.model_dump(mode="json", by_alias=True)}
    with open(os.environ["RECORD_FILE"], "a") as stream:
        stream.write(json.dumps(record) + "\\n")
"""


def big_payloads(size: int) -> list[bytes]:
    """Not JSON: random bytes, and text full of control characters (valid UTF-8)."""
    control = bytes(range(32)) + b"\x7f"
    text = (control * (size // len(control) + 1))[:size]
    return [os.urandom(size), text]


def example_payload(protocol: str, message: str) -> bytes:
    spec = yaml.safe_load((EXAMPLES / protocol / "asyncapi.yaml").read_text())
    return json.dumps(spec["components"]["messages"][message]["examples"][0]["payload"]).encode()


def dead_letters_command(
    project: Path, package: str, env: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", package, "dead-letters", *arguments],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def listed(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def spooled(directory: Path) -> list[tuple[str, bytes]]:
    return [(k.letter.address, k.letter.payload) for k in Spool(directory, 2**40).letters()]


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- MQTT ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mqtt_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("mqtt-dead-letters") / "iot"
    return project_with_handlers(
        output, "mqtt", dict.fromkeys(("receive_telemetry", "receive_status"), FLAKY_HANDLER)
    )


def mqtt_env(broker: Mosquitto, tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(broker.port),
        "MQTT_CLIENT_ID": "dead-letter-test",
        "RECONNECT_MAX_DELAY": "1",
        "DEAD_LETTER_SPOOL_DIR": str(tmp_path / "spool"),
        "RECORD_FILE": str(tmp_path / "record.jsonl"),
        "FAIL_FLAG": str(tmp_path / "fail"),
        **env,
    }


@pytest.mark.parametrize("library", ["aiomqtt", "gmqtt"])
def test_mqtt_megabyte_invalid_payloads_reach_the_dead_letter_topic_or_the_spool(
    mqtt_project: Path, tmp_path: Path, library: str
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", "message_size_limit 1048576\n")
    broker.start()
    env = mqtt_env(broker, tmp_path, MQTT_MAX_PACKET_SIZE=str(MEGABYTE), MQTT_CLIENT=library)
    service = ServiceProcess(mqtt_project, MQTT_PACKAGE, env)
    dead = Listener(broker.port, [f"{MQTT_PACKAGE}/dead-letter/#"])
    try:
        service.wait_for("subscribed to")
        # About a megabyte, and right at the limit: those fit mosquitto's limit, but not
        # with the dead letter's longer topic, and are spooled.
        sent = [
            (f"devices/big-{i}/telemetry", payload)
            for i, payload in enumerate(big_payloads(1_000_000) + big_payloads(MEGABYTE - 8))
        ]
        for topic, payload in sent:
            dead.publish(topic, payload)
        spool = tmp_path / "spool"
        wait_until(
            lambda: len(dead.messages) + len(spooled(spool)) >= len(sent), 60, "dead letters"
        )
        time.sleep(0.3)  # anything beyond the expected count would arrive now
        published = []
        for topic, payload in dead.messages:
            parsed = parse_mqtt_topic(f"{MQTT_PACKAGE}/dead-letter", topic)
            assert parsed is not None and parsed[:2] == ("receiveTelemetry", "invalid")
            published.append((parsed[2], payload))
        assert len(published) == 2, "those about a megabyte were published"
        assert Counter(published + spooled(spool)) == Counter(sent)
        assert "kept in the spool" in service.output()
        assert service.process.poll() is None
        # The dead-letter session kept the published ones: collected into the spool,
        # they are listed with the spooled ones.
        lines = listed(dead_letters_command(mqtt_project, MQTT_PACKAGE, env, "list"))
        assert Counter((line[3], line[4]) for line in lines) == Counter(
            (topic, f"{len(payload)} B") for topic, payload in sent
        )
    finally:
        dead.close()
        assert service.stop() == 0, service.output()[-3000:]
        broker.stop()


def test_mqtt_replay_puts_dead_letters_back_through_the_fixed_handler(
    mqtt_project: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    env = mqtt_env(mosquitto, tmp_path)
    fail = Path(env["FAIL_FLAG"])
    fail.touch()
    service = ServiceProcess(mqtt_project, MQTT_PACKAGE, env)
    publisher = Listener(mosquitto.port, [f"{MQTT_PACKAGE}/dead-letter/#"])
    try:
        service.wait_for("subscribed to")
        status = example_payload("mqtt", "DeviceStatus")
        for i in range(3):
            publisher.publish(f"devices/dev-{i}/status", status)
        publisher.wait_for(3)
        lines = listed(dead_letters_command(mqtt_project, MQTT_PACKAGE, env, "list"))
        assert sorted(line[1:4] for line in lines) == [
            ["receiveStatus", "failed", f"devices/dev-{i}/status"] for i in range(3)
        ]
        fail.unlink()  # the handler is fixed
        result = dead_letters_command(mqtt_project, MQTT_PACKAGE, env, "replay")
        assert result.returncode == 0, result.stderr
        assert "3 dead letters replayed" in result.stderr
        records = read_records(Path(env["RECORD_FILE"]), 3)
        assert [r["operation"] for r in records] == ["receiveStatus"] * 3
        assert listed(dead_letters_command(mqtt_project, MQTT_PACKAGE, env, "list")) == []
    finally:
        publisher.close()
        assert service.stop() == 0, service.output()[-3000:]


# -- NATS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nats_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("nats-dead-letters") / "iot"
    return project_with_handlers(
        output,
        "nats",
        dict.fromkeys(
            ("receive_temperature_reading", "receive_device_announcement"), FLAKY_HANDLER
        ),
    )


def nats_env(server: NatsServer, tmp_path: Path) -> dict[str, str]:
    return {
        "NATS_URL": server.url,
        "NATS_RECONNECT_WAIT": "0.2",
        "JETSTREAM_NAK_DELAY": "0",
        "DEAD_LETTER_SPOOL_DIR": str(tmp_path / "spool"),
        "RECORD_FILE": str(tmp_path / "record.jsonl"),
        "FAIL_FLAG": str(tmp_path / "fail"),
    }


def test_nats_megabyte_invalid_payloads_reach_the_dead_letter_stream_or_the_spool(
    nats_project: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    env = nats_env(nats_server, tmp_path)
    service = ServiceProcess(nats_project, NATS_PACKAGE, env)
    # Core and JetStream messages of about a megabyte, and right at nats-server's
    # max_payload: those fit, but not with the dead letter's headers, and are spooled.
    sizes = (1_000_000, MEGABYTE - 64)
    sent = [
        (f"sensors.temperature.big{size}x{kind}", payload)
        for size in sizes
        for kind, payload in enumerate(big_payloads(size))
    ] + [("devices.announce", os.urandom(size)) for size in sizes]

    async def scenario() -> list[tuple[str, bytes]]:
        connection = await nats.connect(nats_server.url)
        assert connection.max_payload == MEGABYTE
        received: list[tuple[str, bytes]] = []

        async def collect(msg: Any) -> None:
            received.append((msg.headers[ADDRESS], msg.data))

        dead = await connection.subscribe(f"{NATS_PACKAGE}.dead-letter", cb=collect)
        js = connection.jetstream()
        for subject, payload in sent:
            if subject == "devices.announce":
                await js.publish(subject, payload)
            else:
                await connection.publish(subject, payload)
        await connection.flush()
        spool = tmp_path / "spool"
        deadline = time.monotonic() + 60
        while len(received) + len(spooled(spool)) < len(sent):
            assert time.monotonic() < deadline, (received, spooled(spool))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # anything beyond the expected count would arrive now
        await dead.unsubscribe()
        await connection.close()
        return received

    try:
        service.wait_for("subscribed to")
        received = asyncio.run(scenario())
        stored = spooled(tmp_path / "spool")
        assert len(received) == 3, "those about a megabyte were published"
        assert Counter(received + stored) == Counter(sent)
        assert service.process.poll() is None
        # The stream kept the published ones; `list` shows them with the spooled ones.
        lines = listed(dead_letters_command(nats_project, NATS_PACKAGE, env, "list"))
        assert Counter((line[3], line[4]) for line in lines) == Counter(
            (subject, f"{len(payload)} B") for subject, payload in sent
        )
    finally:
        assert service.stop() == 0, service.output()[-3000:]


def test_nats_replay_puts_dead_letters_back_through_the_fixed_handler(
    nats_project: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    env = nats_env(nats_server, tmp_path)
    fail = Path(env["FAIL_FLAG"])
    fail.touch()
    service = ServiceProcess(nats_project, NATS_PACKAGE, env)
    reading = example_payload("nats", "TemperatureReading")

    async def send() -> None:
        connection = await nats.connect(nats_server.url)
        dead = await connection.subscribe(f"{NATS_PACKAGE}.dead-letter")
        for i in range(3):
            await connection.publish(f"sensors.temperature.dev{i}", reading)
        for _ in range(3):
            await dead.next_msg(timeout=20)
        await connection.close()

    try:
        service.wait_for("subscribed to")
        asyncio.run(send())
        lines = listed(
            dead_letters_command(
                nats_project, NATS_PACKAGE, env, "list", "--operation", "receiveTemperatureReading"
            )
        )
        assert sorted(line[1:4] for line in lines) == [
            ["receiveTemperatureReading", "failed", f"sensors.temperature.dev{i}"] for i in range(3)
        ]
        fail.unlink()  # the handler is fixed
        result = dead_letters_command(nats_project, NATS_PACKAGE, env, "replay")
        assert result.returncode == 0, result.stderr
        assert "3 dead letters replayed" in result.stderr
        records = read_records(Path(env["RECORD_FILE"]), 3)
        assert [r["operation"] for r in records] == ["receiveTemperatureReading"] * 3
        assert listed(dead_letters_command(nats_project, NATS_PACKAGE, env, "list")) == []
    finally:
        assert service.stop() == 0, service.output()[-3000:]


class SubscribedHandler(logging.Handler):
    """Sets an event when the service says it has subscribed."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "subscribed to" in record.getMessage():
            self.event.set()


@pytest.mark.parametrize("library", ["aiomqtt", "gmqtt"])
def test_mqtt_5_dead_letters_carry_user_properties_within_the_announced_packet_limit(
    tmp_path: Path, library: str
) -> None:
    """mosquitto's `max_packet_size` is announced in the MQTT 5 CONNACK: a dead letter
    whose user properties take it over that limit is spooled, the others carry them."""
    limit = 200_000
    broker = Mosquitto(tmp_path / "mosquitto", f"max_packet_size {limit}\n")
    broker.start()
    settings = Settings(
        mqtt_port=broker.port,
        mqtt_protocol="5",
        mqtt_client_id="service5",
        mqtt_client=library,
        mqtt_dead_letter_session=True,
        dead_letter_spool_dir=tmp_path / "spool",
    )
    route = mqtt_route(
        "readings", "readings", Calls().handler("readings"), Accepted(Reading), qos=1
    )
    service = mqtt_service([route], settings)
    subscribed = threading.Event()
    says_subscribed = SubscribedHandler(subscribed)
    logger = logging.getLogger("svc")
    logger.addHandler(says_subscribed)
    level = logger.level
    logger.setLevel(logging.INFO)
    big = os.urandom(limit - 100)  # fits as a message, not with the dead letter's metadata

    async def scenario() -> tuple[dict[str, str] | None, int | None]:
        assert isinstance(service.transport, MemoryTransport)
        watcher = AiomqttClient(
            dataclasses.replace(settings, mqtt_client_id="watcher5", mqtt_clean_session=True)
        )
        await watcher.connect()
        await watcher.subscribe("dead-letter/#", 1)
        running = asyncio.create_task(service.run())
        try:
            deadline = time.monotonic() + 20
            while not subscribed.is_set():
                assert time.monotonic() < deadline, "the service did not subscribe"
                await asyncio.sleep(0.02)
            await watcher.publish("readings", big, qos=1)
            await watcher.publish("readings", b"{bad", qos=1)
            delivery = await asyncio.wait_for(watcher.receive(), 20)
            watcher.ack(delivery.mid, delivery.qos)
            assert delivery.topic == "dead-letter/readings/invalid/readings"
            assert delivery.payload == b"{bad"
            announced = getattr(service.transport, "max_packet_size", None)
            return delivery.headers, announced
        finally:
            service.stop()
            await running
            await watcher.disconnect()

    try:
        headers, announced = asyncio.run(scenario())
        # The dead-letter session kept the published one, with its user properties.
        listing = io.StringIO()
        with contextlib.redirect_stdout(listing):
            assert asyncio.run(run_command(service, ["dead-letters", "list"])) == 0
    finally:
        logger.removeHandler(says_subscribed)
        logger.setLevel(level)
        broker.stop()
    assert announced == limit
    assert headers is not None
    assert (headers[OPERATION], headers[ADDRESS], headers[REASON_CODE]) == (
        "readings",
        "readings",
        "invalid",
    )
    assert service.stats["readings"].spooled == 1
    lines = [line.split("\t") for line in listing.getvalue().splitlines()]
    assert Counter(tuple(line[1:5]) for line in lines) == Counter(
        [("readings", "invalid", "readings", size) for size in (f"{len(big)} B", "4 B")]
    )
    [small] = [line for line in lines if line[4] == "4 B"]
    assert small[5].startswith("payload does not match the schema")
