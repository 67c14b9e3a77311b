"""Delivery under failure against real brokers: a slow handler under a flood keeps the
service's memory bounded (drops counted where the broker keeps nothing, nothing lost
where it does), failing handlers are retried, a handler's request to its own service is
answered, an invalid request is refused at once, and publishes made while the broker is
away go out, in order, once it is back."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as paho
import pytest
from conftest import (
    Mosquitto,
    NatsServer,
    ServiceProcess,
    broker_binary,
    free_port,
    project_with_handlers,
    wait_for_port,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from runtime_fakes import (
    Reading,
    Settings,
    Status,
    answer,
    mqtt_route,
    mqtt_service,
    nats_route,
    nats_service,
)

from asyncgen.runtime.core import STATUS_HEADER, RequestRejected
from asyncgen.runtime.nats import NatsTransport
from asyncgen.runtime.nats import Route as NatsRoute
from asyncgen.runtime.payloads import Accepted

pytestmark = [pytest.mark.broker]

VALID = b'{"device": "d1", "value": 1.5}'
#: The bound on the service's growth under a flood (the issue's target).
MAX_GROWTH = 20 * 1024 * 1024

# Sleeps HANDLER_DELAY seconds, then records the message's device.
SLOW_HANDLER = """
import asyncio
import os
from typing import Any


async def handle(message: Any, *rest: Any) -> None:
    await asyncio.sleep(float(os.environ.get("HANDLER_DELAY", "0.05")))
    params = rest[0].model_dump(by_alias=True) if len(rest) == 2 else {}
    with open(os.environ["RECORD_FILE"], "a") as stream:
        stream.write(params.get("deviceId", "-") + "\\n")
"""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def padded(payload: dict[str, Any], size: int = 4096) -> bytes:
    """A valid JSON payload of `size` bytes: JSON allows white space after the value."""
    body = json.dumps(payload).encode()
    return body + b" " * (size - len(body))


def last_dropped(service: ServiceProcess) -> int:
    counts = re.findall(r'service stats \{"dropped": (\d+)', service.output())
    return int(counts[-1]) if counts else 0


def assert_bounded_and_dropping(service: ServiceProcess, before: int, peak: int) -> None:
    service.wait_for(r'service stats \{"dropped": [1-9]')
    assert peak - before < MAX_GROWTH, f"grew by {(peak - before) / 2**20:.1f} MiB"
    assert last_dropped(service) > 0


def records(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_until(condition: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- the slow-handler flood ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mqtt_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("flow-mqtt") / "iot"
    return project_with_handlers(output, "mqtt", {"receive_telemetry": SLOW_HANDLER})


@pytest.fixture(scope="module")
def nats_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("flow-nats") / "iot"
    return project_with_handlers(output, "nats", {"receive_temperature_reading": SLOW_HANDLER})


TELEMETRY = {
    "deviceId": "d1",
    "timestamp": "2024-01-15T10:30:00Z",
    "sensors": {"temperature": 23.5, "humidity": 65.2},
}
READING = {"deviceId": "d1", "value": 21.5, "timestamp": "2024-01-15T10:30:00Z"}


def start_mqtt_service(project: Path, port: int, record: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(
        project,
        "iot_device_management",
        {
            "MQTT_PORT": str(port),
            "MQTT_CLIENT_ID": f"flood-{time.monotonic_ns()}",
            "RECORD_FILE": str(record),
            "STATS_INTERVAL": "0.5",
            **env,
        },
    )


def flood_memory(service: ServiceProcess, publish: Any, count: int) -> tuple[int, int]:
    """RSS before the flood, and the most seen while it lasts and drains."""
    time.sleep(0.5)
    before = rss(service.process.pid)
    peak = before
    flooding = asyncio.new_event_loop()
    try:
        task = flooding.create_task(publish(count))
        while not task.done():
            flooding.run_until_complete(asyncio.wait({task}, timeout=0.05))
            peak = max(peak, rss(service.process.pid))
        task.result()
    finally:
        flooding.close()
    for _ in range(20):
        peak = max(peak, rss(service.process.pid))
        time.sleep(0.05)
    return before, peak


@pytest.mark.parametrize("library", ["aiomqtt", "gmqtt"])
def test_mqtt_qos0_flood_to_a_slow_handler_keeps_memory_bounded_and_counts_drops(
    mqtt_project: Path, mosquitto: Mosquitto, tmp_path: Path, library: str
) -> None:
    record = tmp_path / "handled.txt"
    service = start_mqtt_service(mqtt_project, mosquitto.port, record, MQTT_CLIENT=library)
    try:
        service.wait_for("connected to")
        payload = padded(TELEMETRY)

        async def publish(count: int) -> None:
            client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="flooder")
            client.max_queued_messages_set(0)
            client.connect("127.0.0.1", mosquitto.port)
            client.loop_start()
            for _ in range(count):
                client.publish("devices/d1/telemetry", payload, qos=0)
            while client.want_write():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            client.loop_stop()
            client.disconnect()

        before, peak = flood_memory(service, publish, 12_000)
        assert_bounded_and_dropping(service, before, peak)
        handled = len(records(record))
        assert 0 < handled < 12_000
    finally:
        service.stop()


def test_nats_core_flood_to_a_slow_handler_keeps_memory_bounded_and_counts_drops(
    nats_project: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    record = tmp_path / "handled.txt"
    service = ServiceProcess(
        nats_project,
        "iot_device_management_nats",
        {"NATS_URL": nats_server.url, "RECORD_FILE": str(record), "STATS_INTERVAL": "0.5"},
    )
    try:
        service.wait_for("connected to")
        payload = padded(READING)

        async def publish(count: int) -> None:
            connection = await nats.connect(nats_server.url)
            for index in range(count):
                await connection.publish("sensors.temperature.d1", payload)
                if index % 500 == 0:
                    await connection.flush()
            await connection.flush()
            await connection.close()

        before, peak = flood_memory(service, publish, 12_000)
        assert_bounded_and_dropping(service, before, peak)
    finally:
        service.stop()


@pytest.mark.parametrize("library", ["aiomqtt", "gmqtt"])
def test_mqtt_qos1_flood_to_a_slow_handler_loses_nothing(
    mqtt_project: Path, mosquitto: Mosquitto, tmp_path: Path, library: str
) -> None:
    record = tmp_path / "handled.txt"
    service = start_mqtt_service(
        mqtt_project,
        mosquitto.port,
        record,
        HANDLER_DELAY="0.002",
        MAX_PENDING_MESSAGES="10",
        MQTT_CLIENT=library,
    )
    try:
        service.wait_for("connected to")
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="flooder")
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(100)
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        infos = [
            client.publish(
                f"devices/d{n}/telemetry", json.dumps({**TELEMETRY, "deviceId": f"d{n}"}), qos=1
            )
            for n in range(600)
        ]
        for info in infos:
            info.wait_for_publish(20)
        client.loop_stop()
        client.disconnect()
        wait_until(lambda: len(records(record)) >= 600, 60, "600 handled messages")
        assert sorted(set(records(record))) == sorted(f"d{n}" for n in range(600))
        service.wait_for(r'service stats \{"dropped": 0')
        assert last_dropped(service) == 0
    finally:
        service.stop()


async def jetstream_of(service: Any, server: NatsServer, stream: str) -> tuple[nats.NATS, Any]:
    """A connection of the test's own and its JetStream, once the service made `stream`."""
    await asyncio.wait_for(service.connected.wait(), 10)
    connection = await nats.connect(server.url)
    js = connection.jetstream()
    for _ in range(100):
        try:
            await js.stream_info(stream)
            break
        except nats.js.errors.NotFoundError:
            await asyncio.sleep(0.05)
    return connection, js


def test_jetstream_flood_to_a_slow_handler_loses_nothing(nats_server: NatsServer) -> None:
    handled: list[str] = []

    async def handle(message: Reading, context: Any) -> None:
        await asyncio.sleep(0.002)
        handled.append(message.device)

    async def scenario() -> None:
        jet = nats_route(
            "readings",
            "flood.readings",
            handle,
            Accepted(Reading),
            stream="FLOOD",
            durable="flood",
        )
        service = nats_service([jet], Settings(nats_url=nats_server.url, max_pending_messages=5))
        running = asyncio.create_task(service.run())
        connection, js = await jetstream_of(service, nats_server, "FLOOD")
        for n in range(300):
            await js.publish("flood.readings", json.dumps({"device": f"d{n}", "value": n}).encode())
        await connection.close()
        deadline = time.monotonic() + 30
        while len(set(handled)) < 300 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        service.stop()
        await running

    asyncio.run(scenario())
    assert set(handled) == {f"d{n}" for n in range(300)}


# -- retries -----------------------------------------------------------------------------


def test_a_handler_failing_twice_then_succeeding_is_handled_not_dead_lettered(
    mosquitto: Mosquitto,
) -> None:
    attempts: list[int] = []
    dead_letters: list[bytes] = []

    async def handle(message: Reading, context: Any) -> None:
        attempts.append(context.attempt)
        if len(attempts) <= 2:
            raise ConnectionError("the database restarts")

    async def scenario() -> Any:
        route = mqtt_route("readings", "readings", handle, Accepted(Reading), qos=1)
        service = mqtt_service(
            [route],
            Settings(mqtt_port=mosquitto.port, handler_retries=2, handler_retry_backoff=0.01),
        )
        watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="watcher")
        watcher.on_message = lambda client, userdata, message: dead_letters.append(message.payload)
        watcher.connect("127.0.0.1", mosquitto.port)
        watcher.subscribe("dead-letter", qos=1)
        watcher.loop_start()
        running = asyncio.create_task(service.run())
        await asyncio.wait_for(service.connected.wait(), 10)
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="publisher")
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        publisher.publish("readings", VALID, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while service.stats["readings"].handled < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        service.stop()
        await running
        for client in (publisher, watcher):
            client.loop_stop()
            client.disconnect()
        return service.stats["readings"]

    stats = asyncio.run(scenario())
    assert attempts == [1, 2, 3]
    assert (stats.handled, stats.retried, stats.dead_lettered) == (1, 2, 0)
    assert dead_letters == []


# -- requests ----------------------------------------------------------------------------


def status_route(handler: Any) -> NatsRoute:
    return nats_route("status", "svc.status", handler, Accepted(Reading), reply=Status)


def test_a_handler_requesting_an_operation_of_its_own_service_gets_the_reply(
    nats_server: NatsServer,
) -> None:
    outcomes: list[Any] = []

    async def ask(message: Reading, context: Any) -> None:
        try:
            reply = await service.request("svc.status", VALID, timeout=5.0)
        except Exception as exc:
            outcomes.append(exc)
        else:
            outcomes.append(json.loads(reply))

    # Default settings: MAX_CONCURRENCY 1.
    service = nats_service(
        [nats_route("ask", "svc.ask", ask, Accepted(Reading)), status_route(answer)],
        Settings(nats_url=nats_server.url),
    )

    async def scenario() -> None:
        running = asyncio.create_task(service.run())
        await asyncio.wait_for(service.connected.wait(), 10)
        connection = await nats.connect(nats_server.url)
        await connection.publish("svc.ask", VALID)
        await connection.flush()
        deadline = time.monotonic() + 10
        while not outcomes and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await connection.close()
        service.stop()
        await running

    asyncio.run(scenario())
    assert outcomes == [{"device": "d1", "value": 2.5}]


def test_an_invalid_nats_request_gets_an_error_reply_and_the_typed_error(
    nats_server: NatsServer,
) -> None:
    async def scenario() -> tuple[Any, RequestRejected]:
        service = nats_service([status_route(answer)], Settings(nats_url=nats_server.url))
        running = asyncio.create_task(service.run())
        await asyncio.wait_for(service.connected.wait(), 10)
        connection = await nats.connect(nats_server.url)
        # The request timeout is long: the error reply comes at once, or the test fails.
        reply = await connection.request("svc.status", b'{"device": 1}', timeout=10)
        with pytest.raises(RequestRejected) as raised:
            await NatsTransport(connection).request("svc.status", b"not json", timeout=10)
        await connection.close()
        service.stop()
        await running
        return reply, raised.value

    reply, error = asyncio.run(scenario())
    assert reply.headers[STATUS_HEADER] == "400"
    assert "device" in json.loads(reply.data)["error"]
    assert error.status == 400 and error.reason


def test_an_invalid_mqtt5_request_gets_an_error_reply_on_its_response_topic(
    mosquitto: Mosquitto,
) -> None:
    replies: list[Any] = []

    async def scenario() -> None:
        status = mqtt_route("status", "svc/status", answer, Accepted(Reading), qos=1, reply=Status)
        service = mqtt_service([status], Settings(mqtt_port=mosquitto.port, mqtt_protocol="5"))
        running = asyncio.create_task(service.run())
        await asyncio.wait_for(service.connected.wait(), 10)
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="asker", protocol=paho.MQTTv5
        )
        client.on_message = lambda c, u, message: replies.append(message)
        client.connect("127.0.0.1", mosquitto.port)
        client.subscribe("asker/replies", qos=1)
        client.loop_start()
        await asyncio.sleep(0.2)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = "asker/replies"
        client.publish("svc/status", b"{}", qos=1, properties=properties).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while not replies and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        client.loop_stop()
        client.disconnect()
        service.stop()
        await running

    asyncio.run(scenario())
    [reply] = replies
    assert dict(reply.properties.UserProperty)[STATUS_HEADER] == "400"
    assert "device" in json.loads(reply.payload)["error"]


# -- the outgoing buffer -----------------------------------------------------------------


@pytest.mark.parametrize("library", ["aiomqtt", "gmqtt"])
def test_publishes_before_the_first_connection_and_while_the_broker_is_down_go_out_in_order(
    tmp_path: Path, library: str
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", "persistence true\n", port=free_port())
    received: list[bytes] = []

    def listen(clean: bool) -> paho.Client:
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="listener", clean_session=clean
        )
        client.on_message = lambda c, u, message: received.append(message.payload)
        client.connect("127.0.0.1", broker.port)
        client.subscribe("out", qos=1)
        client.loop_start()
        return client

    def quit_(client: paho.Client) -> None:
        time.sleep(0.2)
        client.loop_stop()
        client.disconnect()

    async def scenario() -> None:
        # The listener's session keeps what is published while it is away.
        broker.start()
        quit_(listen(clean=False))
        broker.stop()
        service = mqtt_service(
            [], Settings(mqtt_port=broker.port, mqtt_client_id="buffered", mqtt_client=library)
        )
        running = asyncio.create_task(service.run())
        await asyncio.sleep(0)
        early = [asyncio.create_task(service.publish("out", b"%d" % n, qos=1)) for n in range(3)]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in early)
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(asyncio.gather(*early), 10)
        await asyncio.to_thread(broker.stop)
        deadline = time.monotonic() + 10
        while service.connected.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        late = [asyncio.create_task(service.publish("out", b"%d" % n, qos=1)) for n in range(3, 6)]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(asyncio.gather(*late), 10)
        service.stop()
        await running

    try:
        asyncio.run(scenario())
        client = listen(clean=False)
        deadline = time.monotonic() + 10
        while len(received) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        quit_(client)
    finally:
        broker.stop()
    assert received == [b"0", b"1", b"2", b"3", b"4", b"5"]


# -- backpressure of QoS 1 -----------------------------------------------------------------


@pytest.mark.parametrize("library", ["aiomqtt", "gmqtt"])
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_qos1_messages_beyond_max_pending_are_never_dropped(
    mosquitto: Mosquitto, protocol: str, library: str
) -> None:
    # The broker's in-flight window bounds them (MQTT 5: the service's Receive Maximum
    # is MAX_PENDING_MESSAGES), though mosquitto 2.0.11 sends a window's worth more
    # after each ack.
    handled: list[str] = []

    async def handle(message: Reading, context: Any) -> None:
        await asyncio.sleep(0.002)
        handled.append(message.device)

    async def scenario() -> int:
        route = mqtt_route("readings", "readings", handle, Accepted(Reading), qos=1)
        service = mqtt_service(
            [route],
            Settings(
                mqtt_port=mosquitto.port,
                mqtt_protocol=protocol,
                max_pending_messages=5,
                mqtt_client=library,
            ),
        )
        running = asyncio.create_task(service.run())
        await asyncio.wait_for(service.connected.wait(), 10)
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="publisher")
        publisher.max_inflight_messages_set(200)
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        for n in range(200):
            publisher.publish("readings", json.dumps({"device": f"d{n}", "value": n}), qos=1)
        deadline = time.monotonic() + 20
        while len(handled) < 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        publisher.loop_stop()
        publisher.disconnect()
        service.stop()
        await running
        return service.service_stats.dropped

    dropped = asyncio.run(scenario())
    assert sorted(handled) == sorted(f"d{n}" for n in range(200))
    assert dropped == 0


# -- JetStream ---------------------------------------------------------------------------


def test_a_server_without_jetstream_is_one_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [broker_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def handle(message: Reading, context: Any) -> None:
        pass

    async def scenario() -> None:
        route = nats_route(
            "readings", "js.readings", handle, Accepted(Reading), stream="S", durable="d"
        )
        service = nats_service([route], Settings(nats_url=f"nats://127.0.0.1:{port}"))
        running = asyncio.create_task(service.run())
        await asyncio.sleep(2.0)
        service.stop()
        await running

    try:
        wait_for_port(port)
        with caplog.at_level(logging.WARNING, logger="svc"):
            asyncio.run(scenario())
    finally:
        server.terminate()
        server.wait(10)
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1, problems
    assert "JetStream is not enabled" in problems[0] and "readings" in problems[0]


def test_a_handler_longer_than_the_ack_wait_keeps_its_message_by_progress_acks(
    nats_server: NatsServer,
) -> None:
    attempts: list[int] = []

    async def handle(message: Reading, context: Any) -> None:
        attempts.append(context.attempt)
        await asyncio.sleep(2.5)

    async def scenario() -> None:
        route = nats_route(
            "readings", "slow.readings", handle, Accepted(Reading), stream="SLOW", durable="slow"
        )
        service = nats_service([route], Settings(nats_url=nats_server.url, jetstream_ack_wait=1.0))
        running = asyncio.create_task(service.run())
        connection, js = await jetstream_of(service, nats_server, "SLOW")
        await js.publish("slow.readings", VALID)
        deadline = time.monotonic() + 10
        while service.stats["readings"].handled < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # Anything redelivered would arrive within another ack wait.
        await asyncio.sleep(1.5)
        info = await js.consumer_info("SLOW", "slow")
        await connection.close()
        service.stop()
        await running
        assert info.config.ack_wait == 1.0

    asyncio.run(scenario())
    assert attempts == [1]


def test_nats_publishes_before_the_first_connection_and_while_the_server_is_down_go_out(
    tmp_path: Path,
) -> None:
    server = NatsServer(tmp_path / "nats")
    received: list[str] = []

    async def echo(message: Reading, context: Any) -> None:
        received.append(message.device)

    def reading(n: int) -> bytes:
        return json.dumps({"device": f"d{n}", "value": n}).encode()

    async def scenario() -> None:
        # The service hears its own publishes: its subscription is up before buffered
        # publishes go out, so nothing races.
        service = nats_service(
            [nats_route("echo", "out", echo, Accepted(Reading))],
            Settings(nats_url=server.url, nats_reconnect_wait=0.05, nats_reconnect_max_wait=0.2),
        )
        running = asyncio.create_task(service.run())
        await asyncio.sleep(0)
        early = [asyncio.create_task(service.publish("out", reading(n))) for n in range(3)]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in early)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(asyncio.gather(*early), 10)
        await asyncio.to_thread(server.stop)
        deadline = time.monotonic() + 10
        while service.connected.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        late = [asyncio.create_task(service.publish("out", reading(n))) for n in range(3, 6)]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(asyncio.gather(*late), 10)
        deadline = time.monotonic() + 10
        while len(received) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        service.stop()
        await running

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    assert received == [f"d{n}" for n in range(6)]
