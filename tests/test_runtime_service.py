"""The runtime's MQTT service against a fake client: acks after the handler, shutdown
that lets handlers finish, reconnection with backoff, concurrency; and its backoff."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from runtime_fakes import (
    Calls,
    FakeClient,
    Reading,
    Settings,
    mqtt_route,
    mqtt_service,
    until,
)

from asyncgen.runtime.core import Backoff
from asyncgen.runtime.mqtt import MqttService
from asyncgen.runtime.payloads import Accepted

VALID = b'{"device": "d1", "value": 1.5}'


def serving(
    calls: Calls, client: FakeClient, settings: Settings | None = None, **handler: Any
) -> MqttService[None]:
    route = mqtt_route(
        "readings", "readings", calls.handler("readings", **handler), Accepted(Reading), qos=1
    )
    service = mqtt_service([route], settings)
    service.client = lambda: client  # type: ignore[method-assign]
    return service


def test_a_message_is_acknowledged_after_its_handler_and_published_replies_go_out() -> None:
    async def scenario() -> tuple[FakeClient, Calls]:
        calls, client = Calls(), FakeClient()
        service = serving(calls, client, delay=0.05)
        running = asyncio.create_task(service.run())
        await client.connected.wait()
        client.deliver("readings", VALID, mid=1)
        await asyncio.sleep(0.01)
        assert client.acked == [], "acknowledged before the handler finished"
        await until(lambda: client.acked == [1])
        client.deliver("readings", b"not json", mid=2)
        await until(lambda: client.acked == [1, 2])
        service.stop()
        await running
        return client, calls

    client, calls = asyncio.run(scenario())
    assert client.subscribed == [("readings", 1)]
    assert calls.operations == ["readings"]
    [(topic, payload, qos, _)] = client.published
    assert (topic, qos) == ("dead-letter", 1)
    assert json.loads(payload)["payload"] == "not json"


def test_a_stop_lets_the_handler_in_flight_finish_and_acknowledges_it() -> None:
    async def scenario() -> tuple[FakeClient, Calls]:
        calls, client = Calls(), FakeClient()
        service = serving(calls, client, delay=0.2)
        running = asyncio.create_task(service.run())
        await client.connected.wait()
        client.deliver("readings", VALID, mid=4)
        await asyncio.sleep(0.05)
        service.stop()
        await running
        return client, calls

    client, calls = asyncio.run(scenario())
    assert calls.operations == ["readings"]
    assert client.acked == [4]


def test_a_lost_connection_reconnects_with_backoff_and_resubscribes() -> None:
    async def scenario() -> tuple[FakeClient, Calls]:
        calls, client = Calls(), FakeClient(fail_connects=2)
        service = serving(calls, client)
        running = asyncio.create_task(service.run())
        await client.connected.wait()
        client.deliver("readings", VALID, mid=1)
        client.lose()
        await until(lambda: client.connects == 4)
        client.deliver("readings", VALID, mid=2)
        await until(lambda: len(calls.calls) == 2)
        service.stop()
        await running
        return client, calls

    client, calls = asyncio.run(scenario())
    assert len(calls.calls) == 2
    assert client.connects == 4  # two refused, one lost, one more
    assert client.subscribed == [("readings", 1), ("readings", 1)]


def test_handlers_run_concurrently_up_to_max_concurrency() -> None:
    running: list[int] = []
    peak = 0

    async def handler(message: Any, context: Any) -> None:
        nonlocal peak
        running.append(1)
        peak = max(peak, len(running))
        await asyncio.sleep(0.05)
        running.pop()

    async def scenario() -> FakeClient:
        client = FakeClient()
        route = mqtt_route("readings", "readings", handler, Accepted(Reading), qos=1)
        service = mqtt_service([route], Settings(max_concurrency=3))
        service.client = lambda: client  # type: ignore[method-assign]
        task = asyncio.create_task(service.run())
        await client.connected.wait()
        for mid in range(1, 8):
            client.deliver("readings", VALID, mid=mid)
        await until(lambda: len(client.acked) == 7)
        service.stop()
        await task
        return client

    client = asyncio.run(scenario())
    assert peak == 3
    assert client.acked == list(range(1, 8)), "acks in arrival order"


def test_messages_on_the_dead_letter_topic_are_acknowledged_and_not_handled() -> None:
    async def scenario() -> tuple[FakeClient, Calls]:
        calls, client = Calls(), FakeClient()
        service = serving(calls, client)
        task = asyncio.create_task(service.run())
        await client.connected.wait()
        client.deliver("dead-letter", b"{}", mid=3)
        await until(lambda: client.acked == [3])
        service.stop()
        await task
        return client, calls

    client, calls = asyncio.run(scenario())
    assert calls.calls == []
    assert client.published == []


def test_a_handler_that_outlives_its_timeout_fails_and_is_dead_lettered() -> None:
    calls = Calls()
    service = mqtt_service(
        [mqtt_route("slow", "slow", calls.handler("slow", delay=1.0), Accepted(Reading))],
        Settings(handler_timeout=0.01),
    )
    result = asyncio.run(service.dispatch("slow", VALID))
    assert result.status == "failed"
    assert "TimeoutError" in (result.reason or "")
    assert service.stats["slow"].dead_lettered == 1


def test_shared_subscriptions_prefix_every_filter_with_the_highest_qos() -> None:
    async def handler(*args: object) -> None: ...

    routes = [
        mqtt_route("a", "x/{id}", handler, qos=0),
        mqtt_route("b", "x/{other}", handler, qos=1),
        mqtt_route("c", "y", handler, qos=0),
    ]
    service = mqtt_service(routes, Settings(mqtt_shared_group="g"))
    assert service.subscriptions() == {"$share/g/x/+": 1, "$share/g/y": 0}


def test_backoff_doubles_up_to_its_maximum_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 5.0, jitter=lambda low, high: high)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0
    assert 0.5 <= Backoff(1.0, 5.0).next() <= 1.0
