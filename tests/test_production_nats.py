"""Production hardening of the generated NATS service, against nats-server started here.

Each test is one behaviour a service in production depends on: it waits for a server that
is not up yet, shares work with a replica, authenticates, verifies TLS, finishes its work
on SIGTERM, survives a flood of garbage and logs in a form a log pipeline can read.
All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import json
import re
import signal
import ssl
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from conftest import (
    EXAMPLES,
    NatsServer,
    ServiceProcess,
    free_port,
    make_certificates,
    project_with_handlers,
    wait_for_port,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PACKAGE = "iot_device_management_nats"
DEAD_LETTER = f"{PACKAGE}.dead-letter"
#: The queue group that the spec's NATS binding gives `receiveTemperatureReading`.
QUEUE_GROUP = "telemetry-processors"

# Writes a line to STARTED_FILE (when set) before it waits HANDLER_DELAY seconds, and its
# record to RECORD_FILE after.
RECORDING_HANDLER = """
import asyncio
import json
import os
from typing import Any


async def handle(message: Any, *rest: Any) -> None:
    context = rest[-1]
    params = rest[0].model_dump(by_alias=True) if len(rest) == 2 else {}
    started = os.environ.get("STARTED_FILE")
    if started:
        with open(started, "a") as stream:
            stream.write(context.subject + "\\n")
    await asyncio.sleep(float(os.environ.get("HANDLER_DELAY", "0")))
    record = {"operation": context.operation, "subject": context.subject, "params": params,
              "message": message.model_dump(mode="json", by_alias=True)}
    with open(os.environ["RECORD_FILE"], "a") as stream:
        stream.write(json.dumps(record) + "\\n")
"""


@functools.cache
def _spec() -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / "nats" / "asyncapi.yaml").read_text()))


def spec_example(message: str) -> dict[str, Any]:
    return dict(_spec()["components"]["messages"][message]["examples"][0]["payload"])


def reading(device: str) -> bytes:
    return json.dumps({**spec_example("TemperatureReading"), "deviceId": device}).encode()


def records_in(*paths: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in paths
        if path.exists()
        for line in path.read_text().splitlines()
        if line
    ]


def wait_for_records(*paths: Path, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = records_in(*paths)
        if len(records) >= count:
            return records
        time.sleep(0.05)
    raise AssertionError(f"expected {count} handled messages, got {len(records)}")


RECORDING_MODULES = ("receive_temperature_reading", "receive_device_announcement")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("nats-production") / "iot"
    return project_with_handlers(
        output,
        "nats",
        dict.fromkeys(
            ("receive_temperature_reading", "receive_device_announcement"), RECORDING_HANDLER
        ),
    )


def start_service(project: Path, url: str, record: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(
        project,
        PACKAGE,
        {"NATS_URL": url, "RECORD_FILE": str(record), "NATS_RECONNECT_WAIT": "0.2", **env},
    )


async def publish_all(url: str, messages: list[tuple[str, bytes]], **options: Any) -> None:
    connection = await nats.connect(url, **options)
    for subject, payload in messages:
        await connection.publish(subject, payload)
    await connection.flush()
    await connection.close()


def still_running(service: ServiceProcess) -> None:
    assert service.process.poll() is None, f"the service exited:\n{service.output()}"


# -- 1. the server is not there yet -------------------------------------------------------


@pytest.mark.timeout(60)
def test_service_waits_for_a_server_that_starts_later(project: Path, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "late")  # its port is chosen, nothing listens there yet
    record = tmp_path / "record.jsonl"
    service = start_service(project, server.url, record)
    try:
        service.wait_for(
            r"cannot connect to NATS .*(refused|Connect call failed)", count=2, timeout=15
        )
        time.sleep(0.3)
        still_running(service)
        assert "subscribed to" not in service.output()

        server.start()
        service.wait_for("subscribed to", timeout=15)
        asyncio.run(publish_all(server.url, [("sensors.temperature.late1", reading("late1"))]))
        records = wait_for_records(record, count=1)
        assert records[0]["params"] == {"deviceId": "late1"}
    finally:
        assert service.stop() == 0, service.output()
        server.stop()


@pytest.mark.timeout(90)
def test_after_a_loss_reconnection_backs_off_and_resets(project: Path, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    server.start()
    record = tmp_path / "record.jsonl"
    # nats-py alone would try every 0.2 s: some 20 attempts in the 4 s the server is away.
    service = start_service(project, server.url, record, NATS_RECONNECT_MAX_WAIT="1.0")
    try:
        service.wait_for("subscribed to")
        server.stop()
        service.wait_for("disconnected from NATS; reconnecting")
        before = service.output().count("NATS: ")
        time.sleep(4)
        attempts = service.output().count("NATS: ") - before
        # 0.2 s doubled up to 1 s, with jitter: about 6 attempts.
        assert 2 <= attempts <= 12, service.output()
        server.start()
        service.wait_for("reconnected to NATS", timeout=15)
        asyncio.run(publish_all(server.url, [("sensors.temperature.back1", reading("back1"))]))
        assert wait_for_records(record, count=1)[0]["params"] == {"deviceId": "back1"}
        # The wait starts again from NATS_RECONNECT_WAIT after a reconnection.
        server.stop()
        service.wait_for("disconnected from NATS; reconnecting", count=2)
        before = service.output().count("NATS: ")
        time.sleep(0.7)
        assert service.output().count("NATS: ") - before >= 2, service.output()
    finally:
        assert service.stop() == 0, service.output()
        server.stop()


# -- 2. scale-out over a queue group --------------------------------------------------------


@pytest.mark.timeout(120)
def test_two_replicas_in_the_queue_group_handle_each_message_once(
    project: Path, tmp_path: Path
) -> None:
    monitor = free_port()
    server = NatsServer(tmp_path / "nats", extra_config=f"http: 127.0.0.1:{monitor}")
    server.start()
    paths = [tmp_path / "replica-a.jsonl", tmp_path / "replica-b.jsonl"]
    services = [start_service(project, server.url, path) for path in paths]
    total = 1000
    try:
        for service in services:
            service.wait_for("subscribed to")
        # Both replicas joined the queue group the spec's binding names.
        wait_for_port(monitor)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{monitor}/subsz?subs=1", timeout=5
        ) as answer:
            subscriptions = json.load(answer)["subscriptions_list"]
        groups = [s.get("qgroup") for s in subscriptions if s["subject"] == "sensors.temperature.*"]
        assert groups == [QUEUE_GROUP, QUEUE_GROUP], subscriptions

        messages = [(f"sensors.temperature.q{i}", reading(f"q{i}")) for i in range(total)]
        asyncio.run(publish_all(server.url, messages))
        wait_for_records(*paths, count=total, timeout=60)
        time.sleep(0.5)  # a duplicate would show up by now
        counts = Counter(r["params"]["deviceId"] for r in records_in(*paths))
        assert set(counts) == {f"q{i}" for i in range(total)}
        assert set(counts.values()) == {1}, [d for d, n in counts.items() if n > 1][:10]
        per_replica = [len(records_in(path)) for path in paths]
        assert all(n > 0 for n in per_replica), per_replica
        print(f"\nqueue group {QUEUE_GROUP}: {per_replica[0]} + {per_replica[1]} of {total}")
    finally:
        for service in services:
            assert service.stop() == 0, service.output()
        server.stop()


# -- 3. user and password -------------------------------------------------------------------

USER = "telemetry"
PASSWORD = "correct-horse-battery-staple"
AUTHORIZATION = f'authorization {{ user: "{USER}", password: "{PASSWORD}" }}'


@pytest.mark.timeout(60)
def test_service_connects_with_user_and_password(project: Path, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", extra_config=AUTHORIZATION)
    server.start()
    record = tmp_path / "record.jsonl"
    service = start_service(project, server.url, record, NATS_USER=USER, NATS_PASSWORD=PASSWORD)
    try:
        service.wait_for("subscribed to")
        asyncio.run(
            publish_all(
                server.url,
                [("sensors.temperature.auth1", reading("auth1"))],
                user=USER,
                password=PASSWORD,
            )
        )
        assert wait_for_records(record, count=1)[0]["params"] == {"deviceId": "auth1"}
    finally:
        assert service.stop() == 0, service.output()
        server.stop()
    assert PASSWORD not in service.output()


@pytest.mark.timeout(60)
def test_wrong_password_is_retried_calmly_logged_and_never_printed(
    project: Path, tmp_path: Path
) -> None:
    server = NatsServer(tmp_path / "nats", extra_config=AUTHORIZATION)
    server.start()
    wrong = "not-the-password-4711"
    service = start_service(
        project,
        server.url,
        tmp_path / "record.jsonl",
        NATS_USER=USER,
        NATS_PASSWORD=wrong,
        NATS_RECONNECT_WAIT="0.5",
    )
    authorization_error = re.compile(r"(?i)authorization violation")
    try:
        service.wait_for(authorization_error.pattern, timeout=15)
        before = len(authorization_error.findall(service.output()))
        time.sleep(3)
        attempts = len(authorization_error.findall(service.output())) - before
        still_running(service)
        # Each attempt is logged; one every NATS_RECONNECT_WAIT (0.5 s), not a tight loop.
        assert 2 <= attempts < 20, f"{attempts} attempts in 3 s:\n{service.output()}"
        failures = re.findall(r"cannot connect to NATS .*", service.output())
        assert failures and all(authorization_error.search(line) for line in failures)
        assert "subscribed to" not in service.output()
    finally:
        code = service.stop()
        server.stop()
    output = service.output()
    assert code == 0, output
    assert wrong not in output and PASSWORD not in output


@pytest.mark.timeout(60)
def test_credentials_in_the_url_never_reach_the_log(project: Path, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", extra_config=AUTHORIZATION)
    server.start()
    url = f"nats://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
    wrong = f"nats://{USER}:not-the-password-4711@127.0.0.1:{server.port}"
    services = [
        start_service(project, url, tmp_path / "a.jsonl"),
        start_service(project, wrong, tmp_path / "b.jsonl"),
    ]
    try:
        services[0].wait_for("subscribed to")
        services[1].wait_for(r"(?i)authorization violation", count=2)
    finally:
        codes = [service.stop() for service in services]
        server.stop()
    for code, service in zip(codes, services, strict=True):
        output = service.output()
        assert code == 0, output
        assert PASSWORD not in output and "not-the-password-4711" not in output, output


# -- 4. TLS ---------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Any:
    ca_file, cert_file, key_file = make_certificates(tmp_path / "pki")
    server = NatsServer(
        tmp_path / "nats",
        extra_config=f'tls {{ cert_file: "{cert_file}", key_file: "{key_file}" }}',
    )
    server.start()
    yield server, ca_file
    server.stop()


@pytest.mark.timeout(60)
def test_service_connects_over_tls_with_the_ca_file(
    project: Path, tls_server: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    server, ca_file = tls_server
    record = tmp_path / "record.jsonl"
    service = start_service(project, server.url, record, NATS_TLS_CA_FILE=str(ca_file))
    try:
        service.wait_for("subscribed to")
        context = ssl.create_default_context(cafile=str(ca_file))
        asyncio.run(
            publish_all(server.url, [("sensors.temperature.tls1", reading("tls1"))], tls=context)
        )
        assert wait_for_records(record, count=1)[0]["params"] == {"deviceId": "tls1"}
    finally:
        assert service.stop() == 0, service.output()


@pytest.mark.timeout(60)
def test_service_without_the_ca_refuses_the_server_and_retries(
    project: Path, tls_server: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    server, _ = tls_server
    service = start_service(project, server.url, tmp_path / "record.jsonl")
    try:
        service.wait_for(r"(?i)certificate verify failed", count=2, timeout=15)
        still_running(service)
        assert "subscribed to" not in service.output()
    finally:
        assert service.stop() == 0, service.output()


# -- 5. SIGTERM lets the handler in flight finish --------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_sigterm_lets_a_slow_handler_finish(
    project: Path, nats_server: NatsServer, tmp_path: Path, concurrency: str
) -> None:
    # MAX_CONCURRENCY 1 runs the handler in nats-py's callback, more in tasks of their own.
    record, started = tmp_path / "record.jsonl", tmp_path / "started.txt"
    service = start_service(
        project,
        nats_server.url,
        record,
        HANDLER_DELAY="2",
        STARTED_FILE=str(started),
        MAX_CONCURRENCY=concurrency,
    )
    try:
        service.wait_for("subscribed to")
        asyncio.run(publish_all(nats_server.url, [("sensors.temperature.slow1", reading("slow1"))]))
        deadline = time.monotonic() + 10
        while not (started.exists() and started.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.read_text() == "sensors.temperature.slow1\n"
        assert not record.exists()
        service.process.send_signal(signal.SIGTERM)
        code = service.process.wait(15)
    finally:
        service.stop()
    assert code == 0, service.output()
    assert [r["params"] for r in records_in(record)] == [{"deviceId": "slow1"}]
    assert "stopped" in service.output()


# -- 6. a flood of malformed messages ----------------------------------------------------------


def malformed_payload(i: int) -> bytes:
    """Ten kinds of bad payloads: not JSON, not UTF-8, empty, and JSON off the schema."""
    kind = i % 10
    good = spec_example("TemperatureReading")
    if kind == 0:
        return b"{not json %d" % i
    if kind == 1:
        return b"\xff\xfe\x00" + i.to_bytes(4, "big")  # not UTF-8: dead-lettered as base64
    if kind == 2:
        return b""
    if kind == 3:
        return json.dumps({**good, "value": "hot", "n": i}).encode()
    if kind == 4:
        return json.dumps({**good, "value": -300 - i}).encode()  # below absolute zero
    if kind == 5:
        return json.dumps({**good, "unexpected": i}).encode()  # additionalProperties: false
    if kind == 6:
        return json.dumps([good, i]).encode()
    if kind == 7:
        return json.dumps({"deviceId": f"m{i}"}).encode()  # required fields missing
    if kind == 8:
        return json.dumps({**good, "deviceId": f"no spaces {i}"}).encode()  # pattern
    return b"null"


@pytest.mark.timeout(180)
def test_flood_of_malformed_messages_is_dead_lettered_and_valid_ones_handled(
    project: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    bad_count, good_count = 10_000, 1_000
    # Room for the whole burst: NATS core keeps nothing, so what finds the service's
    # inbox full is dropped (see test_flow_brokers for that).
    service = start_service(project, nats_server.url, record, MAX_PENDING_MESSAGES="20000")

    async def scenario() -> tuple[list[dict[str, Any]], list[tuple[str, bytes]], float]:
        connection = await nats.connect(nats_server.url)
        envelopes: list[dict[str, Any]] = []
        all_dead = asyncio.Event()

        async def collect(msg: Any) -> None:
            envelopes.append(json.loads(msg.data))
            if len(envelopes) >= bad_count:
                all_dead.set()

        await connection.subscribe(DEAD_LETTER, cb=collect)
        await connection.flush()
        sent_bad: list[tuple[str, bytes]] = []
        start = time.monotonic()
        for i in range(bad_count):
            subject, payload = f"sensors.temperature.m{i}", malformed_payload(i)
            sent_bad.append((subject, payload))
            await connection.publish(subject, payload)
            if i % 10 == 0:
                good = i // 10
                await connection.publish(f"sensors.temperature.v{good}", reading(f"v{good}"))
        await connection.flush()
        with contextlib.suppress(TimeoutError):  # the assertions below say what was missing
            await asyncio.wait_for(all_dead.wait(), 60)
        elapsed = time.monotonic() - start
        await asyncio.sleep(0.3)  # anything beyond the expected count would arrive now
        await connection.close()
        return envelopes, sent_bad, elapsed

    try:
        service.wait_for("subscribed to")
        envelopes, sent_bad, elapsed = asyncio.run(scenario())
        total = bad_count + good_count
        print(
            f"\n{len(envelopes)} of {bad_count} malformed dead-lettered in {elapsed:.1f} s "
            f"({total / elapsed:.0f} messages/s through one service)"
        )
        handled = wait_for_records(record, count=good_count, timeout=30)
        still_running(service)

        def original(envelope: dict[str, Any]) -> tuple[str, bytes]:
            text = envelope["payload"]
            data = (
                base64.b64decode(text)
                if envelope["payload_encoding"] == "base64"
                else text.encode()
            )
            return envelope["subject"], data

        assert len(envelopes) == bad_count
        assert Counter(original(e) for e in envelopes) == Counter(sent_bad)
        assert {e["operation"] for e in envelopes} == {"receiveTemperatureReading"}
        assert Counter(r["params"]["deviceId"] for r in handled) == Counter(
            f"v{i}" for i in range(good_count)
        )
    finally:
        assert service.stop() == 0, service.output()[-5000:]


# -- 7. logs a log pipeline can read ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_json_logs_and_periodic_stats(
    project: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    service = start_service(project, nats_server.url, record, LOG_FORMAT="json", STATS_INTERVAL="1")
    try:
        service.wait_for("subscribed to")
        messages = [(f"sensors.temperature.j{i}", reading(f"j{i}")) for i in range(3)]
        messages.append(("sensors.temperature.j9", b"{broken"))
        asyncio.run(publish_all(nats_server.url, messages))
        wait_for_records(record, count=3)
        stats_line = (
            r'stats receiveTemperatureReading \{[^}]*\\?"received\\?": 4, \\?"handled\\?": 3'
        )
        service.wait_for(stats_line, timeout=10)
    finally:
        assert service.stop() == 0, service.output()

    entries = []
    for line in service.output().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}\n{service.output()}")
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), line
        datetime.datetime.fromisoformat(entry["time"])
        entries.append(entry)

    stats: dict[str, list[dict[str, int]]] = {}
    for entry in entries:
        match = re.fullmatch(r"stats (\S+) (\{.*\})", entry["message"])
        if match:
            stats.setdefault(match[1], []).append(json.loads(match[2]))
    assert set(stats) == {
        "receiveTemperatureReading",
        "receiveStatusRequest",
        "receiveDeviceAnnouncement",
    }
    last = stats["receiveTemperatureReading"][-1]
    assert last["received"] == 4 and last["handled"] == 3 and last["invalid"] == 1
    assert last["dead_lettered"] == 1
    assert any(e["level"] == "ERROR" and "j9" in e["message"] for e in entries)
