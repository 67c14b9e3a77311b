"""The runtime's lifespan, background tasks and HTTP listener (health, readiness,
metrics, POST /operations) against a fake MQTT client and the NATS service in memory."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, SecretStr
from runtime_fakes import (
    Calls,
    DeviceParams,
    FakeClient,
    Reading,
    Settings,
    mqtt_route,
    mqtt_service,
    nats_service,
    until,
)

from asyncgen.runtime.addresses import NATS_SUBJECT, Address, NoParams
from asyncgen.runtime.core import ServiceCore, StartupError
from asyncgen.runtime.http import HttpListener
from asyncgen.runtime.mqtt import MqttService
from asyncgen.runtime.nats import MemoryTransport
from asyncgen.runtime.nats import Route as NatsRoute
from asyncgen.runtime.payloads import Accepted

VALID = b'{"device": "d1", "value": 1.5}'
INVALID = b'{"device": "d1", "value": "high"}'


def http_settings(**extra: Any) -> Settings:
    settings = Settings(**extra)
    settings.http_port = free_port()
    settings.reconnect_initial_delay = 0.01
    settings.reconnect_max_delay = 0.02
    return settings


def serving(calls: Calls, client: FakeClient, settings: Settings) -> MqttService[None]:
    routes = [
        mqtt_route("readings", "readings", calls.handler("readings"), Accepted(Reading), qos=1),
        mqtt_route(
            "deviceReadings",
            "devices/{deviceId}/readings",
            calls.handler("deviceReadings"),
            Accepted(Reading),
            params=DeviceParams,
        ),
    ]
    service = mqtt_service(routes, settings)
    service.client = lambda: client  # type: ignore[method-assign]
    return service


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def post(port: int, path: str, body: bytes, token: str | None = None) -> tuple[int, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Each sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_lifespan_state_reaches_handlers_and_background_tasks_end_before_it_closes() -> None:
    events: list[str] = []

    async def beat() -> None:
        try:
            while True:
                events.append("beat")
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            events.append("background cancelled")
            raise

    @asynccontextmanager
    async def lifespan(service: ServiceCore[Any, Any]) -> AsyncIterator[dict[str, str]]:
        events.append("opened")
        service.start_background(beat())
        yield {"db": "the database"}
        events.append("closed")

    async def scenario() -> Calls:
        calls, client = Calls(), FakeClient()
        service = serving(calls, client, Settings())
        service.lifespan = lifespan
        running = asyncio.create_task(service.run())
        await client.connected.wait()
        client.deliver("readings", VALID, mid=1)
        await until(lambda: calls.calls and events.count("beat") >= 3)
        service.stop()
        await running
        return calls

    calls = asyncio.run(scenario())
    [(_, _, _, context)] = calls.calls
    assert context.state == {"db": "the database"}
    assert context.transport == "mqtt"
    assert events[0] == "opened"
    assert events[-2:] == ["background cancelled", "closed"]


def test_readyz_follows_the_connection_and_healthz_stays_up() -> None:
    async def scenario() -> list[tuple[str, int]]:
        calls, client = Calls(), FakeClient()
        settings = http_settings()
        service = serving(calls, client, settings)
        port = settings.http_port
        seen: list[tuple[str, int]] = []
        running = asyncio.create_task(service.run())
        await until(lambda: service.connected.is_set())
        seen += [("up", (await get(port, "/readyz"))[0]), ("up", (await get(port, "/healthz"))[0])]
        client.fail_connects = client.connects + 10**6  # the broker stays away
        client.lose()
        await until(lambda: not service.connected.is_set())
        seen += [
            ("down", (await get(port, "/readyz"))[0]),
            ("down", (await get(port, "/healthz"))[0]),
        ]
        client.fail_connects = 0  # back
        await until(lambda: service.connected.is_set())
        seen.append(("back", (await get(port, "/readyz"))[0]))
        _, metrics = await get(port, "/metrics")
        seen.append(("reconnects", int(samples(metrics)[("asyncgen_reconnects_total", ())])))
        service.stop()
        await running
        return seen

    assert asyncio.run(scenario()) == [
        ("up", 200),
        ("up", 200),
        ("down", 503),
        ("down", 200),
        ("back", 200),
        ("reconnects", 1),
    ]


def test_metrics_count_each_operations_valid_and_invalid_messages() -> None:
    async def scenario() -> tuple[dict[Any, float], FakeClient]:
        calls, client = Calls(), FakeClient()
        settings = http_settings()
        service = serving(calls, client, settings)
        running = asyncio.create_task(service.run())
        await client.connected.wait()
        for mid in range(1, 6):
            client.deliver("readings", VALID, mid=mid)
        for mid in range(6, 9):
            client.deliver("readings", INVALID, mid=mid)
        await until(lambda: len(client.acked) == 8)
        _, text = await get(settings.http_port, "/metrics")
        service.stop()
        await running
        return samples(text), client

    metrics, client = asyncio.run(scenario())
    readings = (("operation", "readings"),)
    assert metrics[("asyncgen_messages_received_total", readings)] == 8
    assert metrics[("asyncgen_messages_handled_total", readings)] == 5
    assert metrics[("asyncgen_messages_invalid_total", readings)] == 3
    assert metrics[("asyncgen_messages_failed_total", readings)] == 0
    assert metrics[("asyncgen_messages_dead_lettered_total", readings)] == 3
    assert metrics[("asyncgen_handler_duration_seconds_count", readings)] == 5
    other = (("operation", "deviceReadings"),)
    assert metrics[("asyncgen_messages_received_total", other)] == 0
    assert metrics[("asyncgen_published_total", ())] == len(client.published) == 3
    assert metrics[("asyncgen_messages_in_flight", ())] == 0
    assert metrics[("asyncgen_connected", ())] == 1


def test_a_posted_message_takes_the_receive_path_and_bad_ones_are_answered() -> None:
    async def scenario() -> tuple[list[Any], Calls, FakeClient]:
        calls, client = Calls(), FakeClient()
        settings = http_settings(http_token=SecretStr("s3cret"), http_max_body=1000)
        service = serving(calls, client, settings)
        port = settings.http_port
        running = asyncio.create_task(service.run())
        await client.connected.wait()
        path = "/operations/deviceReadings?deviceId=abc"
        answers = [
            await post(port, path, VALID, "s3cret"),
            await post(port, path, INVALID, "s3cret"),
            await post(port, path, VALID, "wrong"),
            await post(port, path, VALID),
            await post(port, "/operations/deviceReadings?deviceId=A/B", VALID, "s3cret"),
            await post(port, "/operations/nothing", VALID, "s3cret"),
            await post(port, path, b" " * 2000, "s3cret"),
            # The path form: the concrete topic after the operation.
            await post(port, "/operations/deviceReadings/devices/xyz/readings", VALID, "s3cret"),
            await post(port, "/operations/deviceReadings/devices/XY/readings", VALID, "s3cret"),
            await post(port, "/operations/deviceReadings/elsewhere", VALID, "s3cret"),
        ]
        service.stop()
        await running
        return answers, calls, client

    answers, calls, client = asyncio.run(scenario())
    statuses = [status for status, _ in answers]
    assert statuses == [202, 400, 401, 401, 400, 404, 413, 202, 400, 400]
    [(operation, message, params, context), (_, _, by_path, by_path_context)] = calls.calls
    assert (operation, message.device, params.device_id) == ("deviceReadings", "d1", "abc")
    assert context.transport == "http"
    assert context.topic == "devices/abc/readings"
    assert (by_path.device_id, by_path_context.topic) == ("xyz", "devices/xyz/readings")
    assert ["deviceId"] in [error["loc"] for error in answers[8][1]["errors"]]
    assert "not on the operation's channel" in answers[9][1]["error"]
    invalid = answers[1][1]
    assert ["value"] in [error["loc"] for error in invalid["errors"]]
    assert "value" in invalid["error"]
    assert ["deviceId"] in [error["loc"] for error in answers[4][1]["errors"]]
    # The invalid message was dead-lettered as one from the broker is.
    [(topic, payload, _, _)] = client.published
    assert topic == "dead-letter"
    assert json.loads(payload)["topic"] == "devices/abc/readings"


class Question(BaseModel):
    question: str


class Answer(BaseModel):
    answer: str


def test_an_operation_that_replies_answers_the_post_with_its_reply_over_nats() -> None:
    async def ask(message: Question, context: Any) -> Answer:
        assert context.transport == "http"
        return Answer(answer=f"{message.question}: {context.state}")

    async def scenario() -> tuple[int, Any, MemoryTransport]:
        settings = http_settings()
        route = NatsRoute(
            operation="ask",
            address=Address("questions", NoParams, NATS_SUBJECT),
            messages=(Accepted(Question),),
            handler=ask,
            with_params=False,
            reply=Answer,
        )
        service = nats_service([route], settings)

        @asynccontextmanager
        async def lifespan(service: ServiceCore[Any, Any]) -> AsyncIterator[str]:
            yield "the state"

        service.lifespan = lifespan
        transport = MemoryTransport()
        service.transport = transport
        listener = HttpListener(service)
        async with service.started():
            await listener.start()
            try:
                status, body = await post(
                    settings.http_port, "/operations/ask", b'{"question": "why"}'
                )
            finally:
                await listener.stop()
        return status, body, transport

    status, body, transport = asyncio.run(scenario())
    assert (status, body) == (200, {"answer": "why: the state"})
    assert transport.published == []  # answered over HTTP only


def test_http_port_without_aiohttp_stops_the_service_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "asyncgen.runtime.http")

    async def scenario() -> None:
        service = serving(Calls(), FakeClient(), http_settings())
        await service.run()

    with pytest.raises(StartupError, match=r"HTTP_PORT is set, but aiohttp is not installed"):
        asyncio.run(scenario())
