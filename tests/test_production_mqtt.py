"""The generated MQTT service under production conditions, against mosquitto (and
nats-server's MQTT-over-WebSocket listener) started by the tests."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
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
    make_certificates,
    project_with_handlers,
    read_records,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PACKAGE = "iot_device_management"

#: The guarantees below are proven on each MQTT client library the service runs on.
on_each_client = pytest.mark.parametrize("mqtt_client", ["aiomqtt", "gmqtt"])

RECORDING_HANDLER = """
import asyncio
import json
import re
import os
from typing import Any


async def handle(message: Any, *rest: Any) -> None:
    context = rest[-1]
    params = rest[0].model_dump(by_alias=True) if len(rest) == 2 else {}
    record = {"operation": context.operation, "topic": context.topic, "params": params}
    with open(os.environ["RECORD_FILE"] + ".started", "a") as stream:
        stream.write(json.dumps(record) + "\\n")
    await asyncio.sleep(float(os.environ.get("HANDLER_DELAY", "0")))
    with open(os.environ["RECORD_FILE"], "a") as stream:
        stream.write(json.dumps(record) + "\\n")
"""


def telemetry() -> dict[str, Any]:
    spec = yaml.safe_load((EXAMPLES / "mqtt" / "asyncapi.yaml").read_text())
    return dict(spec["components"]["messages"]["TelemetryData"]["examples"][0]["payload"])


RECORDING_MODULES = ("receive_telemetry", "receive_status")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("mqtt-production") / "iot"
    return project_with_handlers(
        output, "mqtt", dict.fromkeys(RECORDING_MODULES, RECORDING_HANDLER)
    )


def start_service(project: Path, port: int, record: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(
        project,
        PACKAGE,
        {
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(port),
            "MQTT_CLIENT_ID": f"iot-{time.monotonic_ns()}",
            "RECORD_FILE": str(record),
            "RECONNECT_INITIAL_DELAY": "0.2",
            "RECONNECT_MAX_DELAY": "1",
            **env,
        },
    )


def publish_telemetry(port: int, ids: list[str], qos: int = 1) -> None:
    listener = Listener(port, [])
    try:
        payload = telemetry()
        for device in ids:
            body = json.dumps({**payload, "deviceId": device}).encode()
            listener.publish(f"devices/{device}/telemetry", body, qos=qos)
    finally:
        listener.close()


def handled_ids(*records: Path) -> Counter[str]:
    return Counter(
        json.loads(line)["params"]["deviceId"]
        for path in records
        if path.exists()
        for line in path.read_text().splitlines()
        if line
    )


def wait_for_ids(expected: set[str], *records: Path, timeout: float = 60.0) -> Counter[str]:
    deadline = time.monotonic() + timeout
    counts: Counter[str] = Counter()
    while time.monotonic() < deadline:
        counts = handled_ids(*records)
        if expected <= set(counts):
            return counts
        time.sleep(0.1)
    missing = sorted(expected - set(counts))
    raise AssertionError(f"{len(missing)} never handled, e.g. {missing[:5]}")


@on_each_client
def test_service_started_before_the_broker_connects_when_it_comes_up(
    project: Path, tmp_path: Path, mqtt_client: str
) -> None:
    port = free_port()
    record = tmp_path / "record.jsonl"
    service = start_service(project, port, record, MQTT_CLIENT=mqtt_client)
    broker = Mosquitto(tmp_path / "late", port=port)
    try:
        service.wait_for("reconnecting in", count=2)
        assert service.process.poll() is None
        broker.start()
        service.wait_for("subscribed to", timeout=30)
        publish_telemetry(port, ["late-1"])
        assert read_records(record, 1)[0]["params"]["deviceId"] == "late-1"
    finally:
        assert service.stop() == 0, service.output()
        broker.stop()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@on_each_client
def test_qos1_messages_published_while_the_service_is_down_are_all_handled(
    project: Path, mosquitto: Mosquitto, tmp_path: Path, protocol: str, mqtt_client: str
) -> None:
    record = tmp_path / "record.jsonl"
    env = {
        "MQTT_CLIENT_ID": f"iot-persistent-{protocol}-{mqtt_client}",
        "MQTT_PROTOCOL": protocol,
        "MQTT_CLIENT": mqtt_client,
    }
    first = start_service(project, mosquitto.port, record, **env)
    first.wait_for("subscribed to")
    assert first.stop() == 0, first.output()

    ids = [f"offline-{i}" for i in range(200)]
    publish_telemetry(mosquitto.port, ids)
    second = start_service(project, mosquitto.port, record, **env)
    try:
        counts = wait_for_ids(set(ids), record)
        assert set(counts) == set(ids)
    finally:
        assert second.stop() == 0, second.output()


@on_each_client
def test_broker_restart_mid_stream_loses_no_qos1_message(
    project: Path, tmp_path: Path, mqtt_client: str
) -> None:
    broker = Mosquitto(tmp_path / "persistent", extra_config="persistence true")
    broker.start()
    record = tmp_path / "record.jsonl"
    service = start_service(
        project,
        broker.port,
        record,
        MQTT_CLIENT_ID="iot-restart",
        HANDLER_DELAY="0.02",
        MQTT_CLIENT=mqtt_client,
    )
    try:
        service.wait_for("subscribed to")
        ids = [f"restart-{i}" for i in range(200)]
        publish_telemetry(broker.port, ids)
        read_records(record, 30)
        broker.stop()
        broker.start()
        counts = wait_for_ids(set(ids), record, timeout=90)
        assert set(counts) == set(ids)
        redelivered = sum(n - 1 for n in counts.values())
        print(f"\nredelivered after the broker restart: {redelivered} of 200")
    finally:
        assert service.stop() == 0, service.output()
        broker.stop()


@on_each_client
def test_two_replicas_with_a_shared_group_handle_each_message_once(
    project: Path, mosquitto: Mosquitto, tmp_path: Path, mqtt_client: str
) -> None:
    records = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    services = [
        start_service(
            project, mosquitto.port, path, MQTT_SHARED_GROUP="workers", MQTT_CLIENT=mqtt_client
        )
        for path in records
    ]
    try:
        for service in services:
            service.wait_for("subscribed to")
        ids = [f"shared-{i}" for i in range(1000)]
        publish_telemetry(mosquitto.port, ids)
        counts = wait_for_ids(set(ids), *records)
        assert set(counts.values()) == {1}
        per_replica = [len(handled_ids(path)) for path in records]
        assert all(n > 0 for n in per_replica), per_replica
    finally:
        for service in services:
            assert service.stop() == 0, service.output()


@pytest.fixture
def secure_broker(tmp_path: Path) -> Any:
    ca, cert, key = make_certificates(tmp_path / "certs")
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "device-service", "s3cret-pass"],
        check=True,
        capture_output=True,
    )
    broker = Mosquitto(
        tmp_path / "secure",
        extra_config=(
            f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
            f"allow_anonymous false\npassword_file {passwords}"
        ),
    )
    broker.start()
    yield broker, ca
    broker.stop()


@on_each_client
def test_service_connects_with_tls_and_a_password(
    project: Path, secure_broker: Any, tmp_path: Path, mqtt_client: str
) -> None:
    broker, ca = secure_broker
    record = tmp_path / "record.jsonl"
    service = start_service(
        project,
        broker.port,
        record,
        MQTT_TLS="true",
        MQTT_TLS_CA_FILE=str(ca),
        MQTT_USERNAME="device-service",
        MQTT_PASSWORD="s3cret-pass",
        MQTT_CLIENT=mqtt_client,
    )
    try:
        service.wait_for("subscribed to")
    finally:
        assert service.stop() == 0, service.output()
    assert "s3cret-pass" not in service.output()


@on_each_client
def test_wrong_password_is_retried_with_backoff_and_logged(
    project: Path, secure_broker: Any, tmp_path: Path, mqtt_client: str
) -> None:
    broker, ca = secure_broker
    service = start_service(
        project,
        broker.port,
        tmp_path / "record.jsonl",
        MQTT_TLS="true",
        MQTT_TLS_CA_FILE=str(ca),
        MQTT_USERNAME="device-service",
        MQTT_PASSWORD="wrong-pass",
        MQTT_CLIENT=mqtt_client,
    )
    try:
        service.wait_for("reconnecting in", count=2)
        time.sleep(3)
        log = service.output()
        attempts = log.count("reconnecting in")
        assert "not authori" in log.lower(), log
        assert 2 <= attempts <= 12, attempts
        assert "wrong-pass" not in log
    finally:
        assert service.stop() == 0, service.output()


def test_service_receives_over_websocket(project: Path, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "ws", mqtt=True, websocket=True)
    server.start()
    record = tmp_path / "record.jsonl"
    assert server.websocket_port is not None and server.mqtt_port is not None
    service = start_service(
        project,
        server.websocket_port,
        record,
        MQTT_TRANSPORT="websockets",
        MQTT_WS_PATH="/mqtt",
        MQTT_DEAD_LETTER_TOPIC="iot/dead-letter",
    )
    try:
        service.wait_for("subscribed to")
        publish_telemetry(server.mqtt_port, ["over-ws"])
        assert read_records(record, 1)[0]["params"]["deviceId"] == "over-ws"
    finally:
        assert service.stop() == 0, service.output()
        server.stop()


def test_gmqtt_over_websocket_is_a_clear_error_at_start(project: Path, tmp_path: Path) -> None:
    service = start_service(
        project,
        free_port(),
        tmp_path / "record.jsonl",
        MQTT_CLIENT="gmqtt",
        MQTT_TRANSPORT="websockets",
    )
    assert service.process.wait(20) != 0
    log = service.output()
    assert "MQTT_CLIENT=gmqtt cannot connect over WebSocket" in log
    assert "Traceback" not in log, log


@on_each_client
def test_sigterm_lets_a_slow_handler_finish(
    project: Path, mosquitto: Mosquitto, tmp_path: Path, mqtt_client: str
) -> None:
    record = tmp_path / "record.jsonl"
    service = start_service(
        project, mosquitto.port, record, HANDLER_DELAY="2", MQTT_CLIENT=mqtt_client
    )
    service.wait_for("subscribed to")
    publish_telemetry(mosquitto.port, ["slow-1"])
    started = Path(f"{record}.started")
    deadline = time.monotonic() + 10
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(20) == 0, service.output()
    assert handled_ids(record) == Counter({"slow-1": 1})


@on_each_client
def test_malformed_flood_is_dead_lettered_and_valid_messages_handled(
    project: Path, mosquitto: Mosquitto, tmp_path: Path, mqtt_client: str
) -> None:
    record = tmp_path / "record.jsonl"
    service = start_service(project, mosquitto.port, record, MQTT_CLIENT=mqtt_client)
    dead = Listener(mosquitto.port, [f"{PACKAGE}/dead-letter"])
    publisher = Listener(mosquitto.port, [])
    try:
        service.wait_for("subscribed to")
        valid = telemetry()
        malformed: list[bytes] = []
        started = time.monotonic()
        for i in range(11_000):
            if i % 11 == 0:
                body = json.dumps({**valid, "deviceId": f"ok-{i}"}).encode()
                publisher.client.publish(f"devices/ok-{i}/telemetry", body, qos=1)
            else:
                bad = b"\xff\xfe not json %d" % i if i % 2 else b'{"deviceId": %d}' % i
                malformed.append(bad)
                publisher.client.publish(f"devices/bad-{i}/telemetry", bad, qos=1)
        expected = {f"ok-{i}" for i in range(0, 11_000, 11)}
        counts = wait_for_ids(expected, record, timeout=120)
        envelopes = [json.loads(p) for _, p in dead.wait_for(len(malformed), timeout=120)]
        elapsed = time.monotonic() - started
        print(f"\n11,000 messages (10,000 malformed) through the service in {elapsed:.1f} s")
        assert set(counts.values()) == {1}
        import base64

        originals = Counter(
            base64.b64decode(e["payload"])
            if e["payload_encoding"] == "base64"
            else e["payload"].encode()
            for e in envelopes
        )
        assert originals == Counter(malformed)
        assert service.process.poll() is None
    finally:
        dead.close()
        publisher.close()
        assert service.stop() == 0, service.output()


# -- acknowledgements: only once handled, in arrival order, flushed at a stop --------------

# Waits the number of milliseconds at the end of the device id ("ack-3-250": 250 ms), so
# that with several handlers at once later messages finish before earlier ones.
DELAYED_HANDLER = """
import asyncio
import json
import re
import os
from typing import Any


async def handle(message: Any, params: Any, context: Any) -> None:
    device = params.device_id
    await asyncio.sleep(int(device.rsplit("-", 1)[1]) / 1000)
    record = {"operation": context.operation, "topic": context.topic,
              "params": params.model_dump(by_alias=True)}
    with open(os.environ["RECORD_FILE"], "a") as stream:
        stream.write(json.dumps(record) + "\\n")
"""


@pytest.fixture(scope="module")
def delayed_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("mqtt-delayed") / "iot"
    return project_with_handlers(output, "mqtt", {"receive_telemetry": DELAYED_HANDLER})


def broker_log(broker: Mosquitto, client_id: str) -> tuple[list[int], list[int]]:
    """The packet ids mosquitto sent to `client_id` in PUBLISHes and got back in PUBACKs."""
    published, acked = [], []
    for line in broker.log.read_text(errors="replace").splitlines():
        if f"Sending PUBLISH to {client_id} " in line:
            match = re.search(r"\(d\d, q1, r\d, m(\d+),", line)
            if match:
                published.append(int(match.group(1)))
        elif f"Received PUBACK from {client_id} " in line:
            match = re.search(r"\(Mid: (\d+)", line)
            if match:
                acked.append(int(match.group(1)))
    return published, acked


@on_each_client
def test_acks_follow_arrival_order_when_handlers_finish_out_of_order(
    delayed_project: Path, mosquitto: Mosquitto, tmp_path: Path, mqtt_client: str
) -> None:
    record = tmp_path / "record.jsonl"
    client_id = f"iot-order-{time.monotonic_ns()}"
    service = start_service(
        delayed_project,
        mosquitto.port,
        record,
        MQTT_CLIENT_ID=client_id,
        MAX_CONCURRENCY="4",
        MQTT_CLIENT=mqtt_client,
    )
    try:
        service.wait_for("subscribed to")
        # Slow, fast, fast, ...: the fast ones finish while the slow one at their head runs.
        ids = [f"ack-{i}-{300 if i % 8 == 0 else 5}" for i in range(64)]
        publish_telemetry(mosquitto.port, ids)
        wait_for_ids(set(ids), record)
        finished = [
            json.loads(line)["params"]["deviceId"] for line in record.read_text().splitlines()
        ]
        assert finished != ids, "the handlers did not finish out of order; the test proves nothing"
        deadline = time.monotonic() + 10
        published, acked = broker_log(mosquitto, client_id)
        while len(acked) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
            published, acked = broker_log(mosquitto, client_id)
    finally:
        assert service.stop() == 0, service.output()
    assert len(published) == len(ids)
    assert acked == published


@pytest.mark.parametrize("concurrency", ["1", "4"])
@on_each_client
def test_a_crash_mid_stream_loses_no_qos1_message(
    project: Path, mosquitto: Mosquitto, tmp_path: Path, concurrency: str, mqtt_client: str
) -> None:
    # A message acknowledged before its handler finished would be lost to the kill.
    record = tmp_path / "record.jsonl"
    env = {
        "MQTT_CLIENT_ID": f"iot-crash-{concurrency}-{mqtt_client}",
        "MQTT_CLEAN_SESSION": "false",
        "MAX_CONCURRENCY": concurrency,
        "MQTT_CLIENT": mqtt_client,
    }
    # A first run makes the session; the messages wait in it, to arrive as a backlog.
    first = start_service(project, mosquitto.port, record, **env)
    first.wait_for("subscribed to")
    assert first.stop() == 0, first.output()
    ids = [f"crash-{i}" for i in range(300)]
    publish_telemetry(mosquitto.port, ids)
    first = start_service(project, mosquitto.port, record, HANDLER_DELAY="0.02", **env)
    read_records(record, 40)
    first.process.kill()
    first.process.wait(10)
    handled_before = set(handled_ids(record))
    assert handled_before < set(ids), "everything was handled before the kill"

    second = start_service(project, mosquitto.port, record, **env)
    try:
        counts = wait_for_ids(set(ids), record)
        assert set(counts) == set(ids)
    finally:
        assert second.stop() == 0, second.output()


@pytest.mark.parametrize("concurrency", ["1", "4"])
@on_each_client
def test_sigterm_mid_stream_acks_what_was_handled_and_loses_nothing(
    project: Path, mosquitto: Mosquitto, tmp_path: Path, concurrency: str, mqtt_client: str
) -> None:
    record = tmp_path / "record.jsonl"
    env = {
        "MQTT_CLIENT_ID": f"iot-sigterm-{concurrency}-{mqtt_client}",
        "MQTT_CLEAN_SESSION": "false",
        "MAX_CONCURRENCY": concurrency,
        "MQTT_CLIENT": mqtt_client,
    }
    # A first run makes the session; the messages wait in it, to arrive as a backlog.
    first = start_service(project, mosquitto.port, record, **env)
    first.wait_for("subscribed to")
    assert first.stop() == 0, first.output()
    ids = [f"term-{i}" for i in range(300)]
    publish_telemetry(mosquitto.port, ids)
    first = start_service(project, mosquitto.port, record, HANDLER_DELAY="0.02", **env)
    read_records(record, 40)
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(20) == 0, first.output()
    handled_before = set(handled_ids(record))
    assert handled_before < set(ids), "everything was handled before the stop"

    second = start_service(project, mosquitto.port, record, **env)
    try:
        counts = wait_for_ids(set(ids), record)
    finally:
        assert second.stop() == 0, second.output()
    assert set(counts) == set(ids)
    # Every message handled before the stop was acknowledged before the connection
    # closed, so the broker delivered none of them again.
    assert set(counts.values()) == {1}, sorted(k for k, n in counts.items() if n > 1)[:10]
