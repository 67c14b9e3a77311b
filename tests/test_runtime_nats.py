"""The runtime's NATS service without a server: how a JetStream message is settled
(ack after the handler, nak to retry, term and dead letter when invalid or out of
tries), replies, and how callbacks route among their subscription's routes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from runtime_fakes import Calls, Reading, Settings, nats_route, nats_service

from asyncgen.runtime.addresses import NATS_SUBJECT, Address, NoParams
from asyncgen.runtime.nats import MemoryTransport, NatsService
from asyncgen.runtime.nats import Route as NatsRoute
from asyncgen.runtime.payloads import Accepted
from asyncgen.runtime.routing import RouteTable

VALID = b'{"device": "d1", "value": 1.5}'


@dataclass
class Metadata:
    num_delivered: int


@dataclass
class JetStreamMsg:
    """The parts of nats-py's `Msg` that settling a JetStream message uses."""

    data: bytes
    delivered: int = 1
    subject: str = "readings"
    headers: dict[str, str] | None = None
    reply: str = ""
    settled: list[Any] = field(default_factory=list)

    @property
    def metadata(self) -> Metadata:
        return Metadata(self.delivered)

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append(("nak", delay))

    async def term(self) -> None:
        self.settled.append("term")


def settle(msg: JetStreamMsg, *, fail: bool = False) -> tuple[JetStreamMsg, NatsService[None]]:
    calls = Calls()
    route = nats_route(
        "readings", "readings", calls.handler("readings", fail=fail), Accepted(Reading)
    )
    service = nats_service([route], Settings(jetstream_max_deliver=3, jetstream_nak_delay=0.5))
    asyncio.run(service._settle(RouteTable([route]), route, msg))  # type: ignore[arg-type]
    return msg, service


def dead_letters(service: NatsService[None]) -> list[dict[str, Any]]:
    transport = service.transport
    assert isinstance(transport, MemoryTransport)
    return [json.loads(m.payload) for m in transport.published if m.subject == "dead-letter"]


def test_a_handled_message_is_acked() -> None:
    msg, service = settle(JetStreamMsg(VALID))
    assert msg.settled == ["ack"]
    assert dead_letters(service) == []


def test_an_invalid_message_is_terminated_and_dead_lettered_at_once() -> None:
    msg, service = settle(JetStreamMsg(b"{"))
    assert msg.settled == ["term"]
    [envelope] = dead_letters(service)
    assert envelope["subject"] == "readings"
    assert envelope["payload"] == "{"


def test_a_failed_handler_is_retried_after_the_nak_delay() -> None:
    msg, service = settle(JetStreamMsg(VALID, delivered=2), fail=True)
    assert msg.settled == [("nak", 0.5)]
    assert dead_letters(service) == []


def test_the_last_delivery_of_a_failing_message_is_dead_lettered_and_terminated() -> None:
    msg, service = settle(JetStreamMsg(VALID, delivered=3), fail=True)
    assert msg.settled == ["term"]
    [envelope] = dead_letters(service)
    assert envelope["reason"].startswith("handler raised RuntimeError")


def test_a_request_is_answered_on_its_inbox_with_the_validated_reply() -> None:
    async def answer(message: Reading, context: Any) -> dict[str, str]:
        return {"state": f"seen {message.device}"}

    route = NatsRoute(
        operation="status",
        address=Address("status", NoParams, NATS_SUBJECT),
        messages=(Accepted(Reading),),
        handler=answer,
        with_params=False,
        reply=dict[str, str],
    )
    service = nats_service([route])
    result = asyncio.run(service.dispatch("status", VALID, reply_to="_INBOX.1"))
    assert result.status == "handled"
    transport = service.transport
    assert isinstance(transport, MemoryTransport)
    [reply] = transport.published
    assert (reply.subject, json.loads(reply.payload)) == ("_INBOX.1", {"state": "seen d1"})


def test_a_subscription_s_callback_routes_only_among_its_own_routes() -> None:
    calls = Calls()
    readings = nats_route("readings", "devices.d1", calls.handler("readings"), Accepted(Reading))
    other = nats_route("other", "devices.d1", calls.handler("other"), Accepted(Reading))
    service = nats_service([readings, other])

    async def deliver() -> None:
        inbox = service._inbox(service._handle)
        inbox.start()
        callback = service._receiver(RouteTable([other]), inbox)
        await callback(JetStreamMsg(VALID, subject="devices.d1"))  # type: ignore[arg-type]
        while len(inbox):
            await asyncio.sleep(0.001)
        await inbox.close(1.0)

    asyncio.run(deliver())
    assert calls.operations == ["other"]


def test_a_jetstream_attempt_is_the_delivery_count_and_not_retried_in_the_service() -> None:
    attempts: list[int] = []

    async def handle(message: Reading, context: Any) -> None:
        attempts.append(context.attempt)
        raise RuntimeError("the handler failed")

    route = nats_route("readings", "readings", handle, Accepted(Reading))
    service = nats_service([route], Settings(handler_retries=3, handler_retry_backoff=0.001))
    msg = JetStreamMsg(VALID, delivered=2)
    asyncio.run(service._settle(RouteTable([route]), route, msg))  # type: ignore[arg-type]
    # JetStream redelivers (nak): the service does not try again itself.
    assert attempts == [2]
    assert msg.settled == [("nak", 0.0)]
    assert service.stats["readings"].retried == 0
