"""Fakes for the runtime's unit tests: settings, models and an MQTT client in memory."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from asyncgen.runtime.addresses import MQTT_TOPIC, NATS_SUBJECT, Address, NoParams
from asyncgen.runtime.mqtt import ConnectionLost, Delivery, MqttService
from asyncgen.runtime.mqtt import Route as MqttRoute
from asyncgen.runtime.nats import NatsService
from asyncgen.runtime.nats import Route as NatsRoute
from asyncgen.runtime.payloads import Accepted


@dataclass
class Settings:
    """Every setting the MQTT and NATS services read, with the generated defaults."""

    max_concurrency: int = 1
    handler_timeout: float | None = None
    shutdown_grace_period: float = 5.0
    stats_interval: float = 0.0
    log_rejections_per_minute: int = 20
    log_level: str = "INFO"
    log_format: str = "text"
    tracing: str = "auto"
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    handler_retries: int = 0
    handler_retry_backoff: float = 0.01
    handler_retries_per_operation: dict[str, int] = field(default_factory=dict)
    handler_retry_backoff_per_operation: dict[str, float] = field(default_factory=dict)
    max_pending_messages: int = 1000
    outgoing_buffer_size: int = 1000
    outgoing_buffer_timeout: float = 5.0
    reconnect_initial_delay: float = 0.01
    reconnect_max_delay: float = 0.04
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_client_id: str = "test"
    mqtt_clean_session: bool = False
    mqtt_session_expiry: int = 60
    mqtt_keepalive: int = 60
    mqtt_protocol: Literal["3.1.1", "5"] = "3.1.1"
    mqtt_transport: Literal["tcp", "websockets"] = "tcp"
    mqtt_ws_path: str = "/mqtt"
    mqtt_tls: bool = False
    mqtt_tls_ca_file: Path | None = None
    mqtt_tls_cert_file: Path | None = None
    mqtt_tls_key_file: Path | None = None
    mqtt_tls_insecure: bool = False
    mqtt_shared_group: str | None = None
    mqtt_dead_letter_topic: str = "dead-letter"
    mqtt_client: Literal["aiomqtt", "gmqtt"] = "aiomqtt"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = None
    nats_creds: Path | None = None
    nats_tls_ca_file: Path | None = None
    nats_tls_cert_file: Path | None = None
    nats_tls_key_file: Path | None = None
    nats_name: str = "test"
    nats_queue: str | None = None
    nats_dead_letter_subject: str = "dead-letter"
    nats_request_timeout: float = 1.0
    nats_reconnect_wait: float = 0.01
    nats_reconnect_max_wait: float = 0.04
    nats_connect_timeout: float = 1.0
    jetstream_fetch_batch: int = 10
    jetstream_nak_delay: float = 0.0
    jetstream_max_deliver: int = 3
    jetstream_ack_wait: float = 30.0
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    http_token: SecretStr | None = None
    http_max_body: int = 1_048_576
    mqtt_dead_letter_session: bool = False
    mqtt_max_packet_size: int = 268_435_455
    nats_dead_letter_stream: str = ""
    # Tests that look into the spool give one of their own.
    dead_letter_spool_dir: Path = Path(tempfile.gettempdir()) / f"asyncgen-spool-{os.getpid()}"
    dead_letter_spool_max_size: int = 1024**3


class Reading(BaseModel):
    device: str
    value: float


class DeviceParams(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    device_id: str = Field(alias="deviceId", min_length=1, pattern=r"^[a-z0-9]+$")


class Calls:
    """Records what the handlers were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, Any]] = []

    def handler(self, operation: str, *, fail: bool = False, delay: float = 0.0) -> Any:
        async def handle(message: Any, *rest: Any) -> None:
            params = rest[0] if len(rest) == 2 else None
            if delay:
                await asyncio.sleep(delay)
            self.calls.append((operation, message, params, rest[-1]))
            if fail:
                raise RuntimeError("the handler failed")

        return handle

    @property
    def operations(self) -> list[str]:
        return [operation for operation, *_ in self.calls]


def mqtt_route(
    operation: str,
    template: str,
    handler: Any,
    *messages: Accepted,
    params: type[BaseModel] = NoParams,
    qos: int = 0,
    reply: Any = None,
) -> MqttRoute:
    return MqttRoute(
        operation=operation,
        address=Address(template, params, MQTT_TOPIC),
        messages=messages,
        handler=handler,
        with_params=params is not NoParams,
        qos=qos,
        reply=reply,
    )


def nats_route(
    operation: str, template: str, handler: Any, *messages: Accepted, **options: Any
) -> NatsRoute:
    """A NATS route without parameters; `options` are further `Route` fields (reply,
    stream, durable...)."""
    return NatsRoute(
        operation=operation,
        address=Address(template, NoParams, NATS_SUBJECT),
        messages=messages,
        handler=handler,
        with_params=False,
        **options,
    )


class Status(Reading):
    """The reply of the request/reply routes in tests."""


async def answer(message: Reading, context: Any) -> Status:
    """A request handler: the reading, one more."""
    return Status(device=message.device, value=message.value + 1)


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait, in the event loop, until `condition()` holds; fail after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.002)


def mqtt_service(routes: list[MqttRoute], settings: Settings | None = None) -> MqttService[None]:
    service: MqttService[None] = MqttService(settings or Settings(), routes, None, "svc")
    service.publishers = None
    return service


def nats_service(routes: list[NatsRoute], settings: Settings | None = None) -> NatsService[None]:
    service: NatsService[None] = NatsService(settings or Settings(), routes, None, "svc")
    service.publishers = None
    return service


@dataclass
class FakeClient:
    """An MQTT client in memory (`mqtt.MqttClient`): messages queued by the test, acks
    and publishes recorded. `fail_connects` connection attempts fail first; `lose()`
    ends the connection the way a broker going away does."""

    fail_connects: int = 0
    connects: int = 0
    subscribed: list[tuple[str, int]] = field(default_factory=list)
    published: list[tuple[str, bytes, int, bool]] = field(default_factory=list)
    headers: list[dict[str, str] | None] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    queue: asyncio.Queue[Delivery | Exception] = field(default_factory=asyncio.Queue)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    received: Callable[[Delivery], None] | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        self.connects += 1
        if self.connects <= self.fail_connects:
            raise ConnectionLost("connection refused")
        self.connected.set()

    async def disconnect(self) -> None:
        self.connected.clear()

    async def subscribe(self, topic_filter: str, qos: int) -> None:
        self.subscribed.append((topic_filter, qos))

    async def publish(
        self,
        topic: str,
        payload: bytes,
        /,
        *,
        qos: int = 0,
        retain: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.published.append((topic, payload, qos, retain))
        self.headers.append(headers)

    async def receive(self) -> Delivery:
        item = await self.queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def queued(self) -> int:
        return self.queue.qsize()

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def listen(self, received: Callable[[Delivery], None] | None) -> None:
        self.received = received
        while received is not None and not self.queue.empty():
            item = self.queue.get_nowait()
            if isinstance(item, Exception):
                self.gone.set()
                break
            received(item)

    async def lost(self) -> None:
        await self.gone.wait()
        self.gone.clear()
        raise ConnectionLost("connection lost")

    def deliver(self, topic: str, payload: bytes, mid: int = 0, qos: int = 1) -> None:
        delivery = Delivery(topic, payload, qos, False, mid)
        if self.received is not None:
            self.received(delivery)
        else:
            self.queue.put_nowait(delivery)

    def lose(self) -> None:
        if self.received is not None:
            self.gone.set()
        else:
            self.queue.put_nowait(ConnectionLost("connection lost"))
