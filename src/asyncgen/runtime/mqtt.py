"""The MQTT service: the core's receive path over an MQTT client behind `MqttClient`.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
The client library is an adapter (`aiomqtt_client`); the service knows only the
interface below, so another library, or a fake in tests, can take its place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Literal, Protocol

from pydantic import SecretStr

from .core import Backoff, CoreSettings, DispatchResult, PublishersT, ServiceCore
from .routing import Route as _Route

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue


class MqttSettings(CoreSettings, Protocol):
    """The settings an MQTT service reads (a generated `Settings` has them all)."""

    @property
    def mqtt_host(self) -> str: ...
    @property
    def mqtt_port(self) -> int: ...
    @property
    def mqtt_username(self) -> str | None: ...
    @property
    def mqtt_password(self) -> SecretStr | None: ...
    @property
    def mqtt_client_id(self) -> str: ...
    @property
    def mqtt_clean_session(self) -> bool: ...
    @property
    def mqtt_session_expiry(self) -> int: ...
    @property
    def mqtt_keepalive(self) -> int: ...
    @property
    def mqtt_protocol(self) -> Literal["3.1.1", "5"]: ...
    @property
    def mqtt_transport(self) -> Literal["tcp", "websockets"]: ...
    @property
    def mqtt_ws_path(self) -> str: ...
    @property
    def mqtt_tls(self) -> bool: ...
    @property
    def mqtt_tls_ca_file(self) -> Path | None: ...
    @property
    def mqtt_tls_cert_file(self) -> Path | None: ...
    @property
    def mqtt_tls_key_file(self) -> Path | None: ...
    @property
    def mqtt_tls_insecure(self) -> bool: ...
    @property
    def mqtt_shared_group(self) -> str | None: ...
    @property
    def mqtt_dead_letter_topic(self) -> str: ...
    @property
    def reconnect_initial_delay(self) -> float: ...
    @property
    def reconnect_max_delay(self) -> float: ...


@dataclass
class MessageContext(Generic[PublishersT]):
    """What a handler knows about a message besides its validated payload (see
    `ServiceCore._context`)."""

    #: The operation id in the AsyncAPI document.
    operation: str
    #: The concrete topic the message arrived on.
    topic: str
    #: The payload exactly as received.
    payload: bytes
    #: Send operations of this service, ready to publish.
    publishers: PublishersT
    qos: int = 0
    retain: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route(_Route):
    """A receive operation's route, with the QoS it subscribes with."""

    qos: int = 0


@dataclass(frozen=True)
class PublishedMessage:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    headers: dict[str, str] | None = None


class Transport(Protocol):
    """Where published messages go: the MQTT client, or a list in memory in tests.

    `headers` travel as MQTT 5 user properties; over MQTT 3.1.1 they are dropped.
    """

    async def publish(
        self,
        topic: str,
        payload: bytes,
        /,
        *,
        qos: int = 0,
        retain: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None: ...


@dataclass
class MemoryTransport:
    """Keeps published messages in a list: `dispatch()`'s transport without a broker."""

    published: list[PublishedMessage] = field(default_factory=list)

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
        self.published.append(PublishedMessage(topic, payload, qos, retain, headers))


class ConnectionLost(Exception):
    """The broker cannot be reached, or the connection to it is gone."""


class Delivery:
    """One message as a client hands it over."""

    __slots__ = (
        "headers",
        "mid",
        "payload",
        "qos",
        "response_topic",
        "retain",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        mid: int = 0,
        headers: dict[str, str] | None = None,
        response_topic: str | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.mid = mid
        self.headers = headers
        self.response_topic = response_topic


class MqttClient(Transport, Protocol):
    """What the service needs of an MQTT client library.

    Errors that mean the connection is gone are raised as `ConnectionLost`. The client
    must not acknowledge QoS 1 and 2 messages by itself: the service calls `ack()` once
    a message is handled.
    """

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def subscribe(self, topic_filter: str, qos: int) -> None: ...

    async def receive(self) -> Delivery:
        """The next message; waits for one."""
        ...

    def queued(self) -> int:
        """How many received messages wait to be taken."""
        ...

    def ack(self, mid: int, qos: int) -> None: ...


class _PendingAck:
    """A QoS 1 or 2 message waiting for its handler before it may be acknowledged."""

    __slots__ = ("mid", "qos", "state")

    def __init__(self, mid: int, qos: int) -> None:
        self.mid = mid
        self.qos = qos
        self.state: Literal["waiting", "done", "skipped"] = "waiting"


class Acks:
    """Acknowledges QoS 1 and 2 messages once handled, in the order they arrived.

    An ack tells the broker the message is safe, so a message is acknowledged only after
    its handler finished or it was dead-lettered, and MQTT 3.1.1 (section 4.6) wants the
    acks in the order the messages arrived, also when handlers finish out of order. So
    acks go out for the longest run of finished messages at the head of the arrival
    order.

    Each ack is written to the socket on its own, so the acks go out in batches: when no
    message waits in the client's queue (the broker may be holding the next ones back
    until it sees acks, see mosquitto's max_inflight_messages), or after `BATCH`
    messages of any QoS, so that a stream of QoS 0 messages never keeps a QoS 1 ack
    waiting for long.

    Acks belong to one connection: a message is redelivered after a reconnect, under a
    packet id that may since name another message, so `close()` drops what is left.
    """

    BATCH = 32

    def __init__(self, client: MqttClient) -> None:
        self._client = client
        self._order: deque[_PendingAck] = deque()
        self._ready = 0
        self._settled = 0  # messages settled since the last flush
        self._closed = False

    def expect(self, delivery: Delivery) -> _PendingAck | None:
        """Keep `delivery`'s place in the arrival order; None when it needs no ack."""
        if delivery.qos == 0 or self._closed:
            return None
        pending = _PendingAck(delivery.mid, delivery.qos)
        self._order.append(pending)
        return pending

    def done(self, pending: _PendingAck | None) -> None:
        """`pending` was handled or dead-lettered: it may be acknowledged."""
        self._settle(pending, "done")

    def skip(self, pending: _PendingAck | None) -> None:
        """`pending` stays unacknowledged, without holding back the acks after it."""
        self._settle(pending, "skipped")

    def _settle(
        self, pending: _PendingAck | None, state: Literal["done", "skipped"]
    ) -> None:
        if self._closed:
            return
        if pending is not None:
            pending.state = state
            self._ready += 1
        self._settled += 1
        if self._ready and (self._settled >= self.BATCH or not self._client.queued()):
            self.flush()

    def flush(self) -> None:
        """Acknowledge the finished messages at the head of the arrival order."""
        self._settled = 0
        order = self._order
        while order and order[0].state != "waiting":
            pending = order.popleft()
            self._ready -= 1
            if pending.state == "done" and not self._closed:
                self._client.ack(pending.mid, pending.qos)

    def close(self) -> None:
        self._closed = True
        self._order.clear()
        self._ready = 0


class MqttService(ServiceCore[MqttSettings, PublishersT]):
    """An MQTT service: `await service.run()` serves until SIGTERM or `stop()`.

    `dispatch()` runs the receive path without a broker. The generated `Service`
    subclass gives the routes of its document.
    """

    address_word = "topic"
    messaging_system = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        routes: Sequence[Route],
        transport: Transport | None,
        logger: str,
    ) -> None:
        super().__init__(settings, routes, logger)
        self.routes: Sequence[Route] = routes
        self.transport: Transport = transport or MemoryTransport()
        # True while the receive loop itself runs a handler (MAX_CONCURRENCY 1): a stop
        # then waits for it instead of cancelling the loop.
        self._handling_inline = False

    def _context(
        self,
        operation: str,
        address: str,
        payload: bytes,
        headers: dict[str, str] | None,
        qos: int,
        retain: bool,
    ) -> MessageContext[PublishersT]:
        # Positional, in field order: cheaper than keywords on every message.
        return MessageContext(
            operation, address, payload, self.publishers, qos, retain, headers or {}
        )

    def _dead_letter_address(self) -> str | None:
        return self.settings.mqtt_dead_letter_topic

    def _carries_trace_context(self) -> bool:
        # MQTT 3.1.1 has no user properties to carry it in.
        return self.settings.mqtt_protocol == "5"

    def _trace_attributes(self) -> dict[str, AttributeValue]:
        return {
            "server.address": self.settings.mqtt_host,
            "server.port": self.settings.mqtt_port,
            "messaging.client.id": self.settings.mqtt_client_id,
        }

    async def _send(self, address: str, payload: bytes, route: _Route | None) -> None:
        qos = route.qos if isinstance(route, Route) else 1
        await self.publish(address, payload, qos=qos)

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
        """Publish through the current connection (the transport `Publishers` uses)."""
        if self.tracing is not None and self.tracing.recording:
            with self.tracing.publishing(topic, payload, headers) as carried:
                await self.transport.publish(
                    topic, payload, qos=qos, retain=retain, headers=carried
                )
            return
        await self.transport.publish(
            topic, payload, qos=qos, retain=retain, headers=headers
        )

    async def dispatch(
        self,
        topic: str,
        payload: bytes,
        *,
        headers: dict[str, str] | None = None,
        qos: int = 0,
        retain: bool = False,
        reply_to: str | None = None,
        dead_letter_failures: bool = True,
    ) -> DispatchResult:
        """Route, validate and handle one message exactly as if it came from the broker.

        `reply_to` is where a request/reply operation answers (the MQTT 5 response
        topic). With `dead_letter_failures=False` a message whose handler raises is not
        dead-lettered, so that the caller can have it redelivered.
        """
        return await self._dispatch(
            self._table,
            topic,
            payload,
            headers,
            reply_to,
            qos=qos,
            retain=retain,
            dead_letter_failures=dead_letter_failures,
        )

    # -- the connection ----------------------------------------------------------------

    def client(self) -> MqttClient:
        """The client library's adapter, built from the settings (aiomqtt)."""
        from .aiomqtt_client import AiomqttClient

        return AiomqttClient(self.settings)

    def subscriptions(self) -> dict[str, int]:
        """Each topic filter to subscribe to, with the highest QoS asked for it."""
        group = self.settings.mqtt_shared_group
        filters: dict[str, int] = {}
        for route in self.routes:
            topic_filter = route.address.subscription
            if group:
                topic_filter = f"$share/{group}/{topic_filter}"
            filters[topic_filter] = max(route.qos, filters.get(topic_filter, 0))
        return filters

    async def run(self) -> None:
        """Serve until `stop()` or SIGTERM/SIGINT; reconnect when the broker is lost."""
        self._catch_signals()
        settings = self.settings
        client = self.client()
        backoff = Backoff(
            settings.reconnect_initial_delay, settings.reconnect_max_delay
        )
        stats_task = self._start_stats()
        try:
            while not self._stopping.is_set():
                try:
                    await self._connected(client, backoff)
                except ConnectionLost as exc:
                    if self._stopping.is_set():
                        break
                    wait = backoff.next()
                    self.logger.warning(
                        "MQTT broker %s:%d unavailable (%s); reconnecting in %.1f s",
                        settings.mqtt_host,
                        settings.mqtt_port,
                        exc,
                        wait,
                    )
                    await self._sleep_unless_stopped(wait)
        finally:
            if stats_task is not None:
                stats_task.cancel()
            await self._drain()
        self.logger.info("stopped")

    async def _connected(self, client: MqttClient, backoff: Backoff) -> None:
        """One connection: subscribe, serve until stopped or lost, disconnect."""
        await client.connect()
        try:
            self.transport = client
            subscriptions = self.subscriptions()
            for topic_filter, qos in subscriptions.items():
                await client.subscribe(topic_filter, qos)
            self.logger.info(
                "connected to %s:%d as %s; subscribed to %s",
                self.settings.mqtt_host,
                self.settings.mqtt_port,
                self.settings.mqtt_client_id,
                ", ".join(subscriptions) or "nothing",
            )
            backoff.reset()
            await self._serve(client)
        finally:
            await client.disconnect()

    async def _serve(self, client: MqttClient) -> None:
        acks = Acks(client)
        consumer = asyncio.create_task(self._consume(client, acks))
        stopper = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait(
                {consumer, stopper}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if consumer in done and consumer.exception() is not None:
            # The connection is gone: the broker redelivers what was not acknowledged.
            acks.close()
            consumer.result()
        # Stopping (the consumer may have returned at the stop by itself already).
        if not self._handling_inline:
            # Waiting for a message, or for a free slot before taking one: nothing to
            # lose.
            consumer.cancel()
        _, pending = await asyncio.wait(
            {consumer}, timeout=self.settings.shutdown_grace_period
        )
        if pending:
            consumer.cancel()
            self.logger.warning(
                "the handler in flight did not finish within the grace period"
            )
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await self._drain()
        # Acknowledge what was handled before the connection closes; an unfinished
        # message stays unacknowledged, and so does everything after it.
        acks.flush()

    async def _consume(self, client: MqttClient, acks: Acks) -> None:
        dead_letter_topic = self.settings.mqtt_dead_letter_topic
        inline = self.settings.max_concurrency == 1
        receive = client.receive
        while True:
            if not inline:
                # Take a message only with a free slot, so that cancelling this loop at
                # a stop never drops one that was taken.
                await self._slots.acquire()
            try:
                delivery = await receive()
            except BaseException:
                if not inline:
                    self._slots.release()
                raise
            pending = acks.expect(delivery)
            if delivery.topic == dead_letter_topic:
                acks.done(pending)
                if not inline:
                    self._slots.release()
                continue
            if inline:
                # One handler at a time: run it here rather than in a task of its own,
                # which costs more than a small handler itself.
                self._handling_inline = True
                try:
                    await self._handle(delivery, acks, pending)
                finally:
                    self._handling_inline = False
                if self._stopping.is_set():
                    return
            else:
                self._start_task(self._handle(delivery, acks, pending))

    async def _handle(
        self, delivery: Delivery, acks: Acks, pending: _PendingAck | None
    ) -> None:
        try:
            await self._dispatch(
                self._table,
                delivery.topic,
                delivery.payload,
                delivery.headers,
                delivery.response_topic,
                qos=delivery.qos,
                retain=delivery.retain,
            )
        except Exception:
            self.logger.exception("unexpected error on %s", delivery.topic)
            # Not acknowledged: the broker redelivers it on the next connection.
            acks.skip(pending)
            return
        acks.done(pending)
