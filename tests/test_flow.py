"""The runtime's delivery under failure, without a broker: the bounded inbox and its
workers, the outgoing buffer, handler retries, error replies to invalid requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from runtime_fakes import (
    Calls,
    FakeClient,
    Reading,
    Settings,
    Status,
    mqtt_route,
    mqtt_service,
    nats_route,
    nats_service,
    until,
)

from asyncgen.runtime.core import STATUS_HEADER, RequestRejected, error_reply, rejected
from asyncgen.runtime.flow import Inbox
from asyncgen.runtime.mqtt import MemoryTransport
from asyncgen.runtime.nats import MemoryTransport as NatsMemoryTransport
from asyncgen.runtime.nats import Route as NatsRoute
from asyncgen.runtime.outbox import Disconnected, Outbox, PublishBufferFull, PublishTimeout
from asyncgen.runtime.payloads import Accepted

VALID = b'{"device": "d1", "value": 1.5}'


# -- the inbox ---------------------------------------------------------------------------


def test_a_full_inbox_drops_what_may_be_dropped_and_keeps_the_rest() -> None:
    async def scenario() -> tuple[list[bool], int]:
        handled: list[int] = []

        async def handle(item: int) -> None:
            handled.append(item)

        inbox: Inbox[int] = Inbox(2, 1, handle)
        offers = [inbox.offer(n, droppable=True) for n in range(4)]
        offers.append(inbox.offer(99, droppable=False))
        return offers, len(inbox)

    offers, waiting = asyncio.run(scenario())
    assert offers == [True, True, False, False, True]
    assert waiting == 3


def test_one_worker_handles_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        handled: list[int] = []

        async def handle(item: int) -> None:
            await asyncio.sleep(0.001 * (5 - item))
            handled.append(item)

        inbox: Inbox[int] = Inbox(100, 1, handle)
        inbox.start()
        for n in range(5):
            inbox.offer(n, droppable=True)
        await until(lambda: len(handled) == 5)
        await inbox.close(1.0)
        return handled

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_handler_waiting_under_lend_lets_the_next_message_be_handled() -> None:
    async def scenario() -> list[str]:
        order: list[str] = []
        answered = asyncio.Event()

        async def handle(item: str) -> None:
            if item == "asks":
                async with inbox.lend():
                    await asyncio.wait_for(answered.wait(), 2.0)
                order.append("asks got its answer")
            else:
                order.append("answers")
                answered.set()

        inbox: Inbox[str] = Inbox(10, 1, handle)
        inbox.start()
        inbox.offer("asks", droppable=False)
        inbox.offer("answers", droppable=False)
        await until(lambda: len(order) == 2)
        # Back to one worker: the next two are handled one after the other again.
        inbox.offer("x", droppable=False)
        await until(lambda: len(order) == 3)
        workers = len(inbox._tasks)
        left, cancelled = await inbox.close(1.0)
        assert (left, cancelled, workers) == ([], 0, 1)
        return order

    assert asyncio.run(scenario())[:2] == ["answers", "asks got its answer"]


def test_closing_the_inbox_returns_what_waited_and_lets_the_running_handler_finish() -> None:
    async def scenario() -> tuple[list[int], list[int], int]:
        handled: list[int] = []

        async def handle(item: int) -> None:
            await asyncio.sleep(0.05)
            handled.append(item)

        inbox: Inbox[int] = Inbox(10, 1, handle)
        inbox.start()
        for n in range(3):
            inbox.offer(n, droppable=False)
        await asyncio.sleep(0.01)
        left, cancelled = await inbox.close(1.0)
        return handled, left, cancelled

    assert asyncio.run(scenario()) == ([0], [1, 2], 0)


# -- the outgoing buffer -----------------------------------------------------------------


class Link:
    """A transport whose connection the test switches on and off."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[str] = []

    def publishing(self, text: str) -> Any:
        async def publish() -> None:
            if not self.up:
                raise Disconnected("no connection")
            self.sent.append(text)

        return publish


def test_publishes_while_down_wait_and_go_out_in_order_once_up() -> None:
    async def scenario() -> list[str]:
        link, outbox = Link(), Outbox(10, 5.0)
        outbox.down()
        waiting = [asyncio.create_task(outbox.send(link.publishing(f"m{n}"))) for n in range(3)]
        await asyncio.sleep(0.01)
        assert link.sent == []
        link.up = True
        outbox.up()
        # A publish made now goes out after those that waited.
        await outbox.send(link.publishing("m3"))
        await asyncio.gather(*waiting)
        return link.sent

    assert asyncio.run(scenario()) == ["m0", "m1", "m2", "m3"]


def test_a_publish_finding_the_connection_gone_waits_for_it() -> None:
    async def scenario() -> list[str]:
        link, outbox = Link(), Outbox(10, 5.0)
        sending = asyncio.create_task(outbox.send(link.publishing("m0")))
        await asyncio.sleep(0.01)
        assert not outbox.is_up and not sending.done()
        link.up = True
        outbox.up()
        await sending
        return link.sent

    assert asyncio.run(scenario()) == ["m0"]


def test_a_full_buffer_refuses_at_once_and_a_long_wait_times_out() -> None:
    async def scenario() -> None:
        link, outbox = Link(), Outbox(2, 0.05)
        outbox.down()
        waiting = [asyncio.create_task(outbox.send(link.publishing(f"m{n}"))) for n in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(PublishBufferFull, match="OUTGOING_BUFFER_SIZE"):
            await outbox.send(link.publishing("m2"))
        for task in waiting:
            with pytest.raises(PublishTimeout):
                await task
        assert len(outbox) == 0 and link.sent == []

    asyncio.run(scenario())


def test_a_service_publishing_before_its_first_connection_buffers_and_counts_refusals() -> None:
    async def scenario() -> None:
        service = mqtt_service([], Settings(outgoing_buffer_size=1))
        service._link_down()
        first = asyncio.create_task(service.publish("t", b"1"))
        await asyncio.sleep(0)
        with pytest.raises(PublishBufferFull):
            await service.publish("t", b"2")
        assert service.service_stats.publish_buffer_full == 1
        service._link_up()
        await first
        transport = service.transport
        assert isinstance(transport, MemoryTransport)
        assert [message.payload for message in transport.published] == [b"1"]

    asyncio.run(scenario())


# -- retries -----------------------------------------------------------------------------


class Flaky:
    """A handler that fails `failures` times, then succeeds; records each attempt."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[int] = []

    async def __call__(self, message: Any, context: Any) -> None:
        self.attempts.append(context.attempt)
        if len(self.attempts) <= self.failures:
            raise ConnectionError("the database restarts")


def test_a_handler_failing_twice_then_succeeding_is_handled_not_dead_lettered() -> None:
    flaky = Flaky(2)
    service = mqtt_service(
        [mqtt_route("readings", "readings", flaky, Accepted(Reading))],
        Settings(handler_retries=2, handler_retry_backoff=0.001),
    )
    result = asyncio.run(service.dispatch("readings", VALID))
    assert result.status == "handled"
    assert flaky.attempts == [1, 2, 3]
    stats = service.stats["readings"]
    assert (stats.handled, stats.retried, stats.failed, stats.dead_lettered) == (1, 2, 0, 0)
    assert isinstance(service.transport, MemoryTransport)
    assert service.transport.published == []


def test_retries_per_operation_override_the_default_and_then_dead_letter() -> None:
    flaky = Flaky(5)
    service = mqtt_service(
        [mqtt_route("readings", "readings", flaky, Accepted(Reading))],
        Settings(
            handler_retries=4,
            handler_retry_backoff=0.001,
            handler_retries_per_operation={"readings": 1},
        ),
    )
    result = asyncio.run(service.dispatch("readings", VALID))
    assert result.status == "failed"
    assert flaky.attempts == [1, 2]
    assert service.stats["readings"].dead_lettered == 1


def test_an_invalid_message_is_never_retried() -> None:
    flaky = Flaky(0)
    service = mqtt_service(
        [mqtt_route("readings", "readings", flaky, Accepted(Reading))],
        Settings(handler_retries=3, handler_retry_backoff=0.001),
    )
    result = asyncio.run(service.dispatch("readings", b"not json"))
    assert result.status == "invalid"
    assert flaky.attempts == []
    assert service.stats["readings"].retried == 0


# -- error replies -----------------------------------------------------------------------


def status_route(handler: Any) -> NatsRoute:
    return nats_route("status", "status", handler, Accepted(Reading), reply=Status)


def test_an_invalid_request_is_answered_with_an_error_reply() -> None:
    calls = Calls()
    service = nats_service([status_route(calls.handler("status"))])
    result = asyncio.run(service.dispatch("status", b'{"device": 1}', reply_to="_INBOX.1"))
    assert result.status == "invalid"
    transport = service.transport
    assert isinstance(transport, NatsMemoryTransport)
    reply, dead_letter = transport.published
    assert reply.subject == "_INBOX.1"
    assert reply.headers is not None and reply.headers[STATUS_HEADER] == "400"
    assert "device" in json.loads(reply.payload)["error"]
    assert dead_letter.subject == "dead-letter"
    error = rejected("status", reply.headers, reply.payload)
    assert isinstance(error, RequestRejected)
    assert error.status == 400 and "device" in error.reason


def test_a_request_whose_handler_fails_is_answered_with_status_500() -> None:
    calls = Calls()
    service = nats_service([status_route(calls.handler("status", fail=True))])
    asyncio.run(service.dispatch("status", VALID, reply_to="_INBOX.2"))
    transport = service.transport
    assert isinstance(transport, NatsMemoryTransport)
    reply = transport.published[0]
    assert reply.headers is not None and reply.headers[STATUS_HEADER] == "500"


def test_an_ordinary_reply_is_no_rejection() -> None:
    assert rejected("s", None, b"{}") is None
    assert rejected("s", {"other": "x"}, b"{}") is None
    body, headers = error_reply(400, "two\nlines")
    assert headers["asyncgen-error"] == "two lines"
    assert json.loads(body) == {"status": 400, "error": "two\nlines"}


# -- the MQTT service's inbox ------------------------------------------------------------


def test_qos0_messages_beyond_max_pending_are_dropped_and_counted_qos1_are_all_kept() -> None:
    async def scenario() -> tuple[Any, int, list[int]]:
        calls, client = Calls(), FakeClient()
        route = mqtt_route(
            "readings", "readings", calls.handler("readings", delay=0.01), Accepted(Reading)
        )
        service = mqtt_service([route], Settings(max_pending_messages=5))
        service.client = lambda: client  # type: ignore[method-assign]
        running = asyncio.create_task(service.run())
        await service.connected.wait()
        for _ in range(50):
            client.deliver("readings", VALID, qos=0)
        for mid in range(1, 11):
            client.deliver("readings", VALID, mid=mid, qos=1)
        await until(lambda: len(client.acked) == 10)
        service.stop()
        await running
        return service.service_stats, len(calls.calls), client.acked

    stats, handled, acked = asyncio.run(scenario())
    assert stats.dropped >= 40
    assert handled == 60 - stats.dropped
    assert acked == list(range(1, 11))
