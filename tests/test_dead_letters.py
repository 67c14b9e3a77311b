"""Dead letters without a broker: their metadata, their MQTT topics, their sizes, the
local spool, what becomes of the original when the broker will not take its dead letter,
and the `dead-letters` command."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from runtime_fakes import (
    Calls,
    FakeClient,
    Reading,
    Settings,
    mqtt_route,
    mqtt_service,
    nats_route,
    nats_service,
)
from test_runtime_nats import JetStreamMsg
from test_runtime_service import until

from asyncgen.runtime.commands import DeadLetterStore, Kept, SpoolStore, manage, run_command
from asyncgen.runtime.deadletters import (
    ADDRESS,
    MAX_REASON,
    OPERATION,
    REASON,
    DeadLetter,
    TooLarge,
    from_mqtt,
    is_dead_letter_topic,
    mqtt_packet_size,
    mqtt_topic,
    nats_size,
    parse_mqtt_topic,
)
from asyncgen.runtime.mqtt import MqttService
from asyncgen.runtime.nats import MemoryTransport
from asyncgen.runtime.payloads import Accepted
from asyncgen.runtime.routing import RouteTable
from asyncgen.runtime.spool import Spool

VALID = b'{"device": "d1", "value": 1.5}'
BINARY = bytes(range(256)) * 4
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def letter(**fields: Any) -> DeadLetter:
    values: dict[str, Any] = {
        "operation": "readings",
        "code": "invalid",
        "reason": "payload does not match",
        "address": "sensors/d1",
        "payload": BINARY,
        "time": WHEN,
    }
    return DeadLetter(**{**values, **fields})


# -- metadata, topics and sizes ------------------------------------------------------------


def test_metadata_round_trips_and_keeps_the_original_headers() -> None:
    original = letter(attempt=3, headers={"traceparent": "00-ab", OPERATION: "forged"})
    metadata = original.metadata()
    assert metadata["traceparent"] == "00-ab"
    assert metadata[OPERATION] == "readings"
    back = DeadLetter.from_metadata(BINARY, metadata)
    assert (back.operation, back.code, back.address, back.time, back.attempt) == (
        "readings",
        "invalid",
        "sensors/d1",
        WHEN,
        3,
    )
    assert back.original_headers() == {"traceparent": "00-ab"}


def test_the_reason_in_the_metadata_is_one_line_and_cut() -> None:
    metadata = letter(reason="line one\r\nline two\x00" + "x" * 10_000).metadata()
    assert metadata[REASON].startswith("line one line two x")
    assert len(metadata[REASON]) == MAX_REASON


def test_headers_that_are_not_a_dead_letters_are_refused() -> None:
    with pytest.raises(ValueError, match="Dead-Letter-Operation"):
        DeadLetter.from_metadata(b"", {ADDRESS: "a"})


def test_the_mqtt_topic_carries_operation_code_and_original_topic() -> None:
    dead = letter(operation="a/b+#c", code="failed", address="sensors/d1/x")
    topic = mqtt_topic("svc/dead-letter", dead)
    assert topic == "svc/dead-letter/a%2Fb%2B%23c/failed/sensors/d1/x"
    assert parse_mqtt_topic("svc/dead-letter", topic) == ("a/b+#c", "failed", "sensors/d1/x")
    assert parse_mqtt_topic("svc/dead-letter", "svc/dead-letter/op/nonsense/x") is None
    assert parse_mqtt_topic("svc/dead-letter", "other/op/failed/x") is None


def test_a_dead_letter_is_read_from_mqtt_5_properties_or_from_the_topic() -> None:
    dead = letter(attempt=2)
    topic = mqtt_topic("dl", dead)
    from_properties = from_mqtt("dl", topic, BINARY, dead.metadata())
    assert from_properties is not None and from_properties.attempt == 2
    assert from_properties.reason == "payload does not match"
    from_levels = from_mqtt("dl", topic, BINARY, None)
    assert from_levels is not None
    assert (from_levels.operation, from_levels.code, from_levels.address) == (
        "readings",
        "invalid",
        "sensors/d1",
    )
    assert from_mqtt("dl", "dl", b"", None) is None


def test_the_dead_letter_topic_and_those_below_it_are_the_service_s_own() -> None:
    assert is_dead_letter_topic("dl", "dl")
    assert is_dead_letter_topic("dl", "dl/op/invalid/x")
    assert not is_dead_letter_topic("dl", "dlx/op")


def test_sizes_count_the_metadata_the_broker_counts() -> None:
    headers = {"A": "bc"}
    assert nats_size(b"12345", None) == 5
    assert nats_size(b"12345", headers) == 5 + len(b"NATS/1.0\r\nA: bc\r\n\r\n")
    plain = mqtt_packet_size("t", b"12345", None)
    assert plain >= 1 + 1 + 2 + 1 + 2 + 5
    assert mqtt_packet_size("t", b"12345", headers) > plain


# -- the spool -----------------------------------------------------------------------------


def test_the_spool_keeps_dead_letters_on_disk_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10_000_000)
    assert list(spool.letters()) == []
    assert spool.put(letter(payload=b"first"))
    assert spool.put(letter(payload=b"\x00second\n", headers={"h": "v"}))
    reopened = Spool(tmp_path / "spool", 10_000_000)
    kept = list(reopened.letters())
    assert [k.letter.payload for k in kept] == [b"first", b"\x00second\n"]
    assert kept[1].letter.original_headers() == {"h": "v"}
    assert reopened.used() == sum(k.path.stat().st_size for k in kept)
    reopened.remove(kept[0])
    assert [k.letter.payload for k in reopened.letters()] == [b"\x00second\n"]


def test_a_full_spool_refuses_and_keeps_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 2_000)
    assert spool.put(letter(payload=b"x" * 1_000))
    assert not spool.put(letter(payload=b"y" * 1_000))
    assert [k.letter.payload[:1] for k in spool.letters()] == [b"x"]
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".deadletter")] == []


def test_unfinished_and_foreign_files_in_the_spool_are_passed_over(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    spool.put(letter())
    (tmp_path / "1-2-3.partial").write_bytes(b"{}\n")
    (tmp_path / "0-bad.deadletter").write_bytes(b"not json")
    assert len(list(spool.letters())) == 1


# -- what becomes of the original ------------------------------------------------------------


class RefusingClient(FakeClient):
    """Accepts messages, refuses every publish: the broker went away."""

    async def publish(self, topic: str, payload: bytes, /, **options: Any) -> None:
        raise ConnectionError("the broker went away")


def serving(client: FakeClient, settings: Settings) -> MqttService[None]:
    route = mqtt_route("readings", "readings", Calls().handler("readings"), Accepted(Reading))
    service = mqtt_service([route], settings)
    service.client = lambda *_: client  # type: ignore[method-assign]
    return service


def serve(service: MqttService[None], client: FakeClient, deliveries: int) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(service.run())
        await client.connected.wait()
        for mid in range(1, deliveries + 1):
            client.deliver("readings", b"\x01not json", mid=mid, qos=1 if mid % 2 else 0)
        await until(lambda: sum(s.received for s in service.stats.values()) == deliveries)
        await asyncio.sleep(0.05)
        service.stop()
        await task

    asyncio.run(scenario())


def test_unpublishable_dead_letters_leave_qos_1_unacknowledged_and_spool_qos_0(
    tmp_path: Path,
) -> None:
    client = RefusingClient()
    service = serving(client, Settings(dead_letter_spool_dir=tmp_path))
    serve(service, client, 4)
    assert client.acked == [], "QoS 1 messages stay for the broker to deliver again"
    stats = service.stats["readings"]
    assert (stats.invalid, stats.dead_lettered, stats.spooled) == (4, 0, 2)
    assert [k.letter.payload for k in Spool(tmp_path, 10**9).letters()] == [b"\x01not json"] * 2


def test_a_dead_letter_over_the_packet_limit_is_spooled_and_the_original_acknowledged(
    tmp_path: Path,
) -> None:
    client = FakeClient()
    settings = Settings(dead_letter_spool_dir=tmp_path, mqtt_max_packet_size=20)
    service = serving(client, settings)
    serve(service, client, 1)
    assert client.acked == [1]
    assert client.published == []
    [kept] = Spool(tmp_path, 10**9).letters()
    assert (kept.letter.address, kept.letter.code) == ("readings", "invalid")


def test_when_the_spool_is_full_qos_0_dead_letters_are_counted_as_lost(tmp_path: Path) -> None:
    client = RefusingClient()
    settings = Settings(dead_letter_spool_dir=tmp_path, dead_letter_spool_max_size=10)
    service = serving(client, settings)
    serve(service, client, 2)
    stats = service.stats["readings"]
    assert (stats.spooled, stats.dead_letters_lost) == (0, 1)
    assert client.acked == []


class RefusingNats(MemoryTransport):
    async def publish(self, subject: str, payload: bytes, /, **options: Any) -> None:
        raise ConnectionError("no server")


def test_jetstream_redelivers_an_invalid_message_whose_dead_letter_was_not_published(
    tmp_path: Path,
) -> None:
    route = nats_route("readings", "readings", Calls().handler("readings"), Accepted(Reading))
    service = nats_service([route], Settings(dead_letter_spool_dir=tmp_path))
    service.transport = RefusingNats()
    msg = JetStreamMsg(b"{")
    asyncio.run(service._settle(RouteTable([route]), route, msg))  # type: ignore[arg-type]
    assert msg.settled == [("nak", 1.0)]
    assert list(Spool(tmp_path, 10**9).letters()) == []


def test_nats_dead_letters_carry_their_metadata_in_headers() -> None:
    route = nats_route("readings", "readings", Calls().handler("readings"), Accepted(Reading))
    service = nats_service([route])
    asyncio.run(service.dispatch("readings", b"{", headers={"traceparent": "t"}))
    transport = service.transport
    assert isinstance(transport, MemoryTransport)
    [published] = transport.published
    assert (published.subject, published.payload) == ("dead-letter", b"{")
    assert published.headers is not None
    assert published.headers["traceparent"] == "t"
    assert published.headers[OPERATION] == "readings"


def test_too_large_says_both_sizes() -> None:
    assert str(TooLarge(10, 5)) == "10 bytes with its metadata, over the limit of 5"


# -- the command ---------------------------------------------------------------------------


class ListStore:
    name = "a list"

    def __init__(self, letters: list[DeadLetter]) -> None:
        self.kept = letters

    async def letters(self) -> AsyncIterator[Kept]:
        for dead in list(self.kept):
            yield Kept(dead, dead)

    async def remove(self, kept: Kept) -> None:
        self.kept.remove(kept.key)


class Letters:
    def __init__(self, *stores: DeadLetterStore) -> None:
        self._stores = stores
        self.republished: list[DeadLetter] = []

    def stores(self) -> Sequence[DeadLetterStore]:
        return self._stores

    async def republish(self, letter: DeadLetter) -> None:
        self.republished.append(letter)


def test_list_prints_one_line_each_and_keeps_them() -> None:
    store = ListStore([letter(), letter(operation="other", payload=b"12")])
    out = io.StringIO()
    assert asyncio.run(manage(Letters(store), "list", out=out)) == 2
    lines = out.getvalue().splitlines()
    assert lines[1].split("\t")[:5] == [
        "2026-01-02T03:04:05+00:00",
        "other",
        "invalid",
        "sensors/d1",
        "2 B",
    ]
    assert len(store.kept) == 2


def test_replay_republishes_and_removes_only_the_chosen_ones(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**9)
    for operation in ("a", "b", "a", "a"):
        spool.put(letter(operation=operation))
    letters = Letters(SpoolStore(spool))
    done = asyncio.run(manage(letters, "replay", operation="a", limit=2))
    assert done == 2
    assert [dead.operation for dead in letters.republished] == ["a", "a"]
    assert [k.letter.operation for k in spool.letters()] == ["b", "a"]


def test_purge_drops_them_from_every_store(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**9)
    spool.put(letter())
    store = ListStore([letter()])
    letters = Letters(SpoolStore(spool), store)
    assert asyncio.run(manage(letters, "purge")) == 2
    assert (list(spool.letters()), store.kept, letters.republished) == ([], [], [])


class Managed:
    def __init__(self) -> None:
        self.ran = False
        self.letters = Letters(ListStore([letter()]))

    async def run(self) -> None:
        self.ran = True

    def dead_letters(self) -> Any:
        letters = self.letters

        class Context:
            async def __aenter__(self) -> Letters:
                return letters

            async def __aexit__(self, *exc: object) -> None:
                return None

        return Context()


def test_the_command_line_serves_without_arguments_and_manages_with_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = Managed()
    assert asyncio.run(run_command(service, [])) == 0
    assert service.ran
    assert asyncio.run(run_command(service, ["dead-letters", "list"])) == 0
    assert "sensors/d1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        asyncio.run(run_command(service, ["dead-letters", "list", "--limit", "0"]))
    assert exit_info.value.code == 2
    assert "not a positive whole number" in capsys.readouterr().err


def test_the_command_says_when_the_broker_cannot_be_reached(
    capsys: pytest.CaptureFixture[str],
) -> None:
    nats = nats_service([], Settings(nats_url="nats://127.0.0.1:1"))
    assert asyncio.run(run_command(nats, ["dead-letters", "list"])) == 1
    assert "error: cannot connect to NATS at 127.0.0.1:1" in capsys.readouterr().err
    mqtt = mqtt_service([], Settings(mqtt_port=1))
    assert asyncio.run(run_command(mqtt, ["dead-letters", "purge"])) == 1
    assert "error: cannot reach the MQTT broker at 127.0.0.1:1" in capsys.readouterr().err
