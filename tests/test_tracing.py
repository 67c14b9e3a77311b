"""Tracing with OpenTelemetry: consumer and producer spans after the messaging semantic
conventions, the trace context carried in MQTT 5 user properties and NATS headers from
a device through the service to what its handler publishes, and no OpenTelemetry at all
when it is not installed or TRACING is off."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Mosquitto, NatsServer
from nats.aio.client import Client as NATS
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, ConfigDict, Field
from runtime_fakes import Calls, DeviceParams, Reading, Settings, mqtt_route, mqtt_service

from asyncgen.runtime.addresses import MQTT_TOPIC, NATS_SUBJECT, Address, NoParams
from asyncgen.runtime.aiomqtt_client import AiomqttClient
from asyncgen.runtime.mqtt import MemoryTransport, MqttService
from asyncgen.runtime.mqtt import Route as MqttRoute
from asyncgen.runtime.nats import MemoryTransport as NatsMemoryTransport
from asyncgen.runtime.nats import NatsService, NoResponders
from asyncgen.runtime.nats import Route as NatsRoute
from asyncgen.runtime.payloads import Accepted

SRC = Path(__file__).resolve().parents[1] / "src"
VALID = b'{"device": "d1", "value": 1.5}'


class LevelParams(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    level: str = Field(min_length=1)


class TracedMqtt(MqttService[None]):
    """An MQTT service whose handler of telemetry publishes an alert (`sendAlert`)."""

    sends = (("sendAlert", Address("alerts/{level}", LevelParams, MQTT_TOPIC)),)

    def __init__(self, settings: Settings, *, fail: bool = False) -> None:
        async def handle(message: Reading, params: DeviceParams, context: Any) -> None:
            if fail:
                raise ValueError("the handler failed")
            await self.publish("alerts/critical", message.model_dump_json().encode(), qos=1)

        route = MqttRoute(
            operation="receiveTelemetry",
            address=Address("devices/{deviceId}/telemetry", DeviceParams, MQTT_TOPIC),
            messages=(Accepted(Reading),),
            handler=handle,
            with_params=True,
            qos=1,
        )
        super().__init__(settings, [route], None, "svc")
        self.publishers = None


class TracedNats(NatsService[None]):
    """A NATS service whose handler of telemetry publishes an alert (`sendAlert`)."""

    sends = (("sendAlert", Address("alerts.{level}", LevelParams, NATS_SUBJECT)),)

    def __init__(self, settings: Settings) -> None:
        async def handle(message: Reading, context: Any) -> None:
            await self.publish("alerts.critical", message.model_dump_json().encode())

        route = NatsRoute(
            operation="receiveTelemetry",
            address=Address("telemetry", NoParams, NATS_SUBJECT),
            messages=(Accepted(Reading),),
            handler=handle,
            with_params=False,
        )
        super().__init__(settings, [route], None, "svc")
        self.publishers = None


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def device_headers(provider: TracerProvider) -> tuple[dict[str, str], ReadableSpan]:
    """The headers a traced device sends its message with, and the device's span."""
    tracer = provider.get_tracer("device")
    headers: dict[str, str] = {}
    with tracer.start_as_current_span("send telemetry", kind=SpanKind.PRODUCER) as span:
        propagate.inject(headers)
    assert isinstance(span, ReadableSpan)
    return headers, span


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def traceparent_span_id(headers: dict[str, str] | None) -> tuple[int, int]:
    """The trace id and parent span id in a `traceparent` header."""
    assert headers is not None and "traceparent" in headers, headers
    _, trace_id, span_id, _ = headers["traceparent"].split("-")
    return int(trace_id, 16), int(span_id, 16)


def assert_one_trace(
    spans: tuple[ReadableSpan, ...], device: ReadableSpan, process: str, publish: str
) -> tuple[ReadableSpan, ReadableSpan]:
    """device -> consumer span -> producer span, in one trace; the two spans."""
    consumer = by_name(spans, process)
    producer = by_name(spans, publish)
    trace_id = device.context.trace_id
    assert consumer.kind is SpanKind.CONSUMER and producer.kind is SpanKind.PRODUCER
    assert consumer.context.trace_id == trace_id == producer.context.trace_id
    assert consumer.parent is not None and consumer.parent.span_id == device.context.span_id
    assert [link.context.span_id for link in consumer.links] == [device.context.span_id]
    assert producer.parent is not None and producer.parent.span_id == consumer.context.span_id
    return consumer, producer


# -- spans and their attributes, without a broker ------------------------------------


def test_spans_are_named_and_attributed_after_the_messaging_conventions(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = exporter
    service = TracedMqtt(Settings(mqtt_protocol="5", mqtt_port=1884, mqtt_client_id="svc-1"))
    service.start_tracing(provider)
    transport = service.transport
    assert isinstance(transport, MemoryTransport)
    headers, device = device_headers(provider)

    result = asyncio.run(service.dispatch("devices/d1/telemetry", VALID, headers=headers))

    assert result.status == "handled"
    consumer, producer = assert_one_trace(
        spans.get_finished_spans(),
        device,
        "process devices/{deviceId}/telemetry",
        "publish alerts/{level}",
    )
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "mqtt",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "devices/d1/telemetry",
        "messaging.destination.template": "devices/{deviceId}/telemetry",
        "messaging.message.body.size": len(VALID),
        "asyncapi.operation.id": "receiveTelemetry",
        "server.address": "127.0.0.1",
        "server.port": 1884,
        "messaging.client.id": "svc-1",
    }
    assert consumer.status.status_code is StatusCode.UNSET
    [alert] = transport.published
    assert dict(producer.attributes or {}) == {
        "messaging.system": "mqtt",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.destination.name": "alerts/critical",
        "messaging.destination.template": "alerts/{level}",
        "messaging.message.body.size": len(alert.payload),
        "asyncapi.operation.id": "sendAlert",
        "server.address": "127.0.0.1",
        "server.port": 1884,
        "messaging.client.id": "svc-1",
    }
    # The alert carries the producer span's context, in MQTT 5 user properties.
    assert traceparent_span_id(alert.headers) == (
        producer.context.trace_id,
        producer.context.span_id,
    )


def test_an_invalid_message_and_a_failing_handler_end_their_spans_in_error(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = exporter
    failing = TracedMqtt(Settings(mqtt_protocol="5", mqtt_dead_letter_topic="dlq"), fail=True)
    failing.start_tracing(provider)

    invalid = asyncio.run(failing.dispatch("devices/d1/telemetry", b'{"device": 1}'))
    failed = asyncio.run(failing.dispatch("devices/d2/telemetry", VALID))

    assert (invalid.status, failed.status) == ("invalid", "failed")
    first, second = (span for span in spans.get_finished_spans() if span.kind is SpanKind.CONSUMER)
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == invalid.reason
    assert (first.attributes or {})["error.type"] == "invalid_message"
    assert second.status.status_code is StatusCode.ERROR
    assert (second.attributes or {})["error.type"] == "ValueError"
    assert [event.name for event in second.events] == ["exception"]
    # Each dead letter is published in a producer span under its message's span.
    dead_letters = [span for span in spans.get_finished_spans() if span.name == "publish dlq"]
    assert [span.parent.span_id if span.parent else None for span in dead_letters] == [
        first.context.span_id,
        second.context.span_id,
    ]
    # Below the dead-letter topic by operation, reason code and original topic.
    assert [(span.attributes or {})["messaging.destination.name"] for span in dead_letters] == [
        "dlq/receiveTelemetry/invalid/devices/d1/telemetry",
        "dlq/receiveTelemetry/failed/devices/d2/telemetry",
    ]


class Command(BaseModel):
    command: str


def test_a_message_that_an_overlapping_operation_takes_is_named_after_it(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = exporter
    calls = Calls()
    service = mqtt_service(
        [
            mqtt_route(
                "receiveTelemetry",
                "devices/{deviceId}/telemetry",
                calls.handler("receiveTelemetry"),
                Accepted(Reading),
                params=DeviceParams,
            ),
            # More specific, so tried first, but a reading is no command.
            mqtt_route(
                "receiveAll", "devices/all/telemetry", calls.handler("all"), Accepted(Command)
            ),
        ]
    )
    service.start_tracing(provider)

    asyncio.run(service.dispatch("devices/all/telemetry", VALID))
    asyncio.run(service.dispatch("devices/all/telemetry", b'{"command": "reboot"}'))

    assert calls.operations == ["receiveTelemetry", "all"]
    named = [
        (span.name, (span.attributes or {})["asyncapi.operation.id"])
        for span in spans.get_finished_spans()
    ]
    assert named == [
        ("process devices/{deviceId}/telemetry", "receiveTelemetry"),
        ("process devices/all/telemetry", "receiveAll"),
    ]


def test_over_mqtt_311_no_context_is_added_to_what_the_service_publishes(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = exporter
    service = TracedMqtt(Settings(mqtt_protocol="3.1.1"))
    service.start_tracing(provider)
    transport = service.transport
    assert isinstance(transport, MemoryTransport)

    asyncio.run(service.dispatch("devices/d1/telemetry", VALID))

    [alert] = transport.published
    assert alert.headers is None
    assert by_name(spans.get_finished_spans(), "publish alerts/{level}").parent is not None


def test_a_context_the_caller_put_in_the_headers_is_published_unchanged(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = exporter
    service = TracedNats(Settings())
    service.start_tracing(provider)
    transport = service.transport
    assert isinstance(transport, NatsMemoryTransport)
    own = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

    asyncio.run(service.publish("alerts.critical", b"{}", headers=dict(own)))
    asyncio.run(service.publish("elsewhere", b"{}"))

    assert transport.published[0].headers == own
    assert "traceparent" in (transport.published[1].headers or {})


def test_without_an_sdk_no_context_is_extracted_or_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = TracedMqtt(Settings(mqtt_protocol="5"))  # the global tracer provider: none
    assert service.tracing is not None and not service.tracing.recording
    transport = service.transport
    assert isinstance(transport, MemoryTransport)
    device = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

    def unexpected(*args: object, **kwargs: object) -> None:
        raise AssertionError("the context is extracted or injected without an SDK")

    monkeypatch.setattr(propagate, "extract", unexpected)
    monkeypatch.setattr(propagate, "inject", unexpected)
    result = asyncio.run(service.dispatch("devices/d1/telemetry", VALID, headers=device))

    assert result.status == "handled"
    assert [message.headers for message in transport.published] == [None]


def test_a_nats_request_is_published_in_a_producer_span_that_records_its_failure(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = exporter
    service = TracedNats(Settings())
    service.start_tracing(provider)
    transport = service.transport
    assert isinstance(transport, NatsMemoryTransport)
    transport.replies["alerts.critical"] = b"ok"

    assert asyncio.run(service.request("alerts.critical", b"{}", timeout=1)) == b"ok"
    with pytest.raises(NoResponders):
        asyncio.run(service.request("alerts.nobody", b"{}", timeout=1))

    answered, refused = spans.get_finished_spans()
    assert answered.name == refused.name == "publish alerts.{level}"
    assert traceparent_span_id(transport.published[0].headers)[1] == answered.context.span_id
    assert answered.status.status_code is StatusCode.UNSET
    assert refused.status.status_code is StatusCode.ERROR
    assert (refused.attributes or {})["error.type"] == "asyncgen.runtime.nats.NoResponders"


# -- no OpenTelemetry when it is absent or off ----------------------------------------

_WITHOUT_OPENTELEMETRY = """
import asyncio, sys
sys.path[:0] = [{src!r}, {tests!r}]
if {hide!r}:
    sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
from runtime_fakes import (
    Calls, Reading, Settings, mqtt_route, mqtt_service, nats_route, nats_service
)
from asyncgen.runtime.payloads import Accepted

settings = Settings(mqtt_protocol="5", tracing={tracing!r})
calls = Calls()
mqtt = mqtt_service([mqtt_route("r", "readings", calls.handler("r"), Accepted(Reading))], settings)
nats = nats_service([nats_route("r", "readings", calls.handler("r"), Accepted(Reading))], settings)
valid = b'{{"device": "d1", "value": 1.5}}'
results = [
    asyncio.run(mqtt.dispatch("readings", valid)).status,
    asyncio.run(nats.dispatch("readings", valid, headers={{"traceparent": "x"}})).status,
    asyncio.run(mqtt.dispatch("readings", b"not json")).status,
]
asyncio.run(mqtt.publish("out", b"x"))
loaded = sorted(name for name, module in sys.modules.items()
                if name.startswith("opentelemetry") and module is not None)
print(results, mqtt.tracing, nats.tracing, loaded)
"""


@pytest.mark.parametrize(
    ("hide", "tracing"), [(True, "auto"), (False, "off")], ids=["not-installed", "off"]
)
def test_without_opentelemetry_or_with_tracing_off_nothing_of_it_is_imported(
    hide: bool, tracing: str
) -> None:
    script = _WITHOUT_OPENTELEMETRY.format(
        src=str(SRC), tests=str(Path(__file__).parent), hide=hide, tracing=tracing
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['handled', 'handled', 'invalid'] None None []"


def test_with_opentelemetry_installed_tracing_starts_by_itself() -> None:
    service = TracedNats(Settings())
    assert service.tracing is not None
    assert service.tracing.carries_context
    assert TracedMqtt(Settings(mqtt_protocol="3.1.1")).tracing is not None


# -- one trace from a device through the service, over real brokers -------------------


async def send_until_through(
    provider: TracerProvider,
    send: Callable[[dict[str, str]], Awaitable[None]],
    arrived: asyncio.Queue[Any],
) -> tuple[ReadableSpan, Any]:
    """Send traced messages as a device until what the service publishes arrives (it
    subscribes at its own pace): the device's span of the message that went through,
    and what arrived."""
    sent: list[ReadableSpan] = []
    async with asyncio.timeout(15):
        while True:
            headers, span = device_headers(provider)
            sent.append(span)
            await send(headers)
            try:
                alert = await asyncio.wait_for(arrived.get(), 0.3)
            except TimeoutError:
                continue
            trace_id, _ = traceparent_span_id(alert.headers)
            [origin] = [span for span in sent if span.context.trace_id == trace_id]
            return origin, alert


def assert_traced_through(
    spans: InMemorySpanExporter,
    device: ReadableSpan,
    alert_headers: dict[str, str] | None,
    process: str,
    publish: str,
) -> tuple[ReadableSpan, ReadableSpan]:
    """One trace: device -> consumer span -> producer span -> the published alert."""
    trace_id = device.context.trace_id
    finished = tuple(
        span for span in spans.get_finished_spans() if span.context.trace_id == trace_id
    )
    consumer, producer = assert_one_trace(finished, device, process, publish)
    assert traceparent_span_id(alert_headers) == (trace_id, producer.context.span_id)
    return consumer, producer


@pytest.mark.broker
def test_one_trace_runs_from_a_device_through_the_service_over_mqtt5(
    mosquitto: Mosquitto, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, spans = exporter
    settings = dataclasses.replace(
        Settings(),
        mqtt_port=mosquitto.port,
        mqtt_protocol="5",
        mqtt_client_id="svc",
        mqtt_clean_session=True,
    )

    async def scenario() -> tuple[ReadableSpan, Any]:
        service = TracedMqtt(settings)
        service.start_tracing(provider)
        device = AiomqttClient(dataclasses.replace(settings, mqtt_client_id="device"))
        downstream = AiomqttClient(dataclasses.replace(settings, mqtt_client_id="downstream"))
        await device.connect()
        await downstream.connect()
        await downstream.subscribe("alerts/#", 1)
        running = asyncio.create_task(service.run())
        alerts: asyncio.Queue[Any] = asyncio.Queue()
        receiving = asyncio.create_task(receive_into(downstream, alerts))

        async def send(headers: dict[str, str]) -> None:
            await device.publish("devices/d1/telemetry", VALID, qos=1, headers=headers)

        try:
            return await send_until_through(provider, send, alerts)
        finally:
            receiving.cancel()
            service.stop()
            await asyncio.wait_for(running, 10)
            await device.disconnect()
            await downstream.disconnect()

    device, alert = asyncio.run(scenario())
    assert_traced_through(
        spans,
        device,
        alert.headers,
        "process devices/{deviceId}/telemetry",
        "publish alerts/{level}",
    )


async def receive_into(client: AiomqttClient, queue: asyncio.Queue[Any]) -> None:
    while True:
        delivery = await client.receive()
        client.ack(delivery.mid, delivery.qos)
        queue.put_nowait(delivery)


@pytest.mark.broker
def test_one_trace_runs_from_a_device_through_the_service_over_nats(
    nats_server: NatsServer, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, spans = exporter
    settings = dataclasses.replace(Settings(), nats_url=nats_server.url)

    async def scenario() -> tuple[ReadableSpan, Any]:
        service = TracedNats(settings)
        service.start_tracing(provider)
        client = NATS()
        await client.connect(nats_server.url)
        alerts: asyncio.Queue[Any] = asyncio.Queue()

        async def on_alert(msg: Any) -> None:
            alerts.put_nowait(msg)

        await client.subscribe("alerts.>", cb=on_alert)
        running = asyncio.create_task(service.run())

        async def send(headers: dict[str, str]) -> None:
            await client.publish("telemetry", VALID, headers=headers)

        try:
            return await send_until_through(provider, send, alerts)
        finally:
            service.stop()
            await asyncio.wait_for(running, 10)
            await client.close()

    device, alert = asyncio.run(scenario())
    assert json.loads(alert.data) == json.loads(VALID)
    consumer, producer = assert_traced_through(
        spans, device, alert.headers, "process telemetry", "publish alerts.{level}"
    )
    assert (consumer.attributes or {})["messaging.system"] == "nats"
    assert (producer.attributes or {})["server.port"] == nats_server.port
