"""The MQTT service: the core's receive path over an MQTT client behind `MqttClient`.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
The client library is an adapter (`aiomqtt_client`, `gmqtt_client`, chosen by
MQTT_CLIENT); the service knows only the interface below, so another library, or a fake
in tests, can take its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol

from pydantic import SecretStr

from .commands import CommandError, DeadLetterStore, SpoolStore
from .core import (
    Backoff,
    CoreSettings,
    DispatchResult,
    PublishersT,
    ServiceCore,
    StateT,
)
from .deadletters import (
    DeadLetter,
    check_mqtt_size,
    from_mqtt,
    mqtt_packet_size,
    mqtt_topic,
)
from .flow import Inbox
from .outbox import Disconnected
from .routing import Route as _Route
from .spool import Spool

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
    def mqtt_client(self) -> Literal["aiomqtt", "gmqtt"]: ...
    @property
    def mqtt_dead_letter_session(self) -> bool: ...
    @property
    def mqtt_max_packet_size(self) -> int: ...
    @property
    def reconnect_initial_delay(self) -> float: ...
    @property
    def reconnect_max_delay(self) -> float: ...


@dataclass
class MessageContext(Generic[PublishersT, StateT]):
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
    #: What the project's lifespan yielded: its dependencies (database pool, clients).
    state: StateT
    qos: int = 0
    retain: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    #: 1 the first time the handler gets this message, 2 when it is tried again after
    #: failing, and so on (HANDLER_RETRIES).
    attempt: int = 1
    #: How the message came: "mqtt", or "http" (POST /operations/...).
    transport: str = "mqtt"


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


def dead_letter_client_id(settings: MqttSettings) -> str:
    """The client id whose persistent session collects the service's dead letters."""
    return f"{settings.mqtt_client_id}-dead-letters"


def dead_letter_filter(settings: MqttSettings) -> str:
    """The topic filter of every dead letter (see `deadletters.mqtt_topic`)."""
    return f"{settings.mqtt_dead_letter_topic}/#"


#: MQTT 5's session expiry interval of a session that never expires: the dead-letter
#: session's, which is away between two `dead-letters` commands.
NEVER_EXPIRES = 0xFFFFFFFF

#: Seconds without a dead letter after which the dead-letter session counts as drained.
COLLECT_QUIET = 1.0


class ConnectionLost(Disconnected):
    """The broker cannot be reached, or the connection to it is gone."""


#: Each MQTT client library the service can run on: its adapter module and class, the
#: package it imports, and the extra of the generated project that installs it.
CLIENT_LIBRARIES: dict[str, tuple[str, str, str, str | None]] = {
    "aiomqtt": ("aiomqtt_client", "AiomqttClient", "aiomqtt", None),
    "gmqtt": ("gmqtt_client", "GmqttClient", "gmqtt", "gmqtt"),
}


def client_for(
    settings: MqttSettings,
    client_id: str | None = None,
    session_expiry: int | None = None,
) -> MqttClient:
    """The adapter of the client library MQTT_CLIENT names, built from the settings
    (`client_id` and `session_expiry` as the adapters take them).

    A library that is not installed, or a setting the library cannot honour, stops the
    service at start with one line saying what to do (`SystemExit`, no traceback).
    """
    name = settings.mqtt_client
    module_name, class_name, package, extra = CLIENT_LIBRARIES[name]
    try:
        module = importlib.import_module(f".{module_name}", __package__)
    except ImportError as exc:
        if exc.name != package:
            raise
        install = (
            f"install the project's [{extra}] extra (pip install '.[{extra}]')"
            if extra
            else f"pip install {package}"
        )
        raise SystemExit(
            f"error: MQTT_CLIENT={name} needs the {package} package, which is not "
            f"installed: {install}, or set MQTT_CLIENT=aiomqtt"
        ) from None
    client: MqttClient = getattr(module, class_name)(
        settings, client_id, session_expiry
    )
    return client


@dataclass(frozen=True)
class SessionTerms:
    """What a client asks of the broker when it connects, whatever its library."""

    #: Start without the stored session (MQTT 3.1.1 clean session, MQTT 5 clean start).
    clean: bool
    #: MQTT 5: how long the broker keeps the session after a disconnect (None: clean).
    expiry: int | None
    #: MQTT 5 Receive Maximum: the broker sends at most this many QoS 1 and 2 messages
    #: before it sees their acks, which wait for the handlers: the service's
    #: backpressure. (MQTT 3.1.1 has no such field; the broker's own limit applies, such
    #: as mosquitto's max_inflight_messages.)
    receive_maximum: int


def session_terms(
    settings: MqttSettings, session_expiry: int | None = None
) -> SessionTerms:
    """The settings' session terms; `session_expiry` asks for a persistent session kept
    that long (MQTT 5), whatever the settings say."""
    clean = settings.mqtt_clean_session and session_expiry is None
    expiry = None
    if not clean:
        expiry = (
            settings.mqtt_session_expiry if session_expiry is None else session_expiry
        )
    return SessionTerms(
        clean, expiry, min(max(settings.max_pending_messages, 1), 65535)
    )


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context the settings ask for, or None for a plain connection."""
    if not settings.mqtt_tls and settings.mqtt_tls_ca_file is None:
        return None
    cafile = str(settings.mqtt_tls_ca_file) if settings.mqtt_tls_ca_file else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.mqtt_tls_cert_file is not None:
        key = str(settings.mqtt_tls_key_file) if settings.mqtt_tls_key_file else None
        context.load_cert_chain(str(settings.mqtt_tls_cert_file), key)
    if settings.mqtt_tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Delivery:
    """One message as a client hands it over."""

    __slots__ = (
        "acks",
        "headers",
        "mid",
        "payload",
        "pending",
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
        #: Its place in the order of acknowledgements, once the service took it.
        self.pending: _PendingAck | None = None
        self.acks: Acks | None = None


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

    def listen(self, received: Callable[[Delivery], None] | None) -> None:
        """Hand each message to `received` as it arrives, those already queued first,
        instead of queueing it for `receive()`; None queues them again.

        `received` runs inside the client's read callback: it must not block or raise.
        """
        ...

    async def lost(self) -> None:
        """Wait until the connection is gone, then raise `ConnectionLost`."""
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

    def __init__(
        self,
        client: MqttClient,
        queued: Callable[[], int] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """With `loop`, acks found with nothing queued wait for the loop's next read."""
        self._client = client
        #: How many received messages wait to be handled.
        self._queued = queued or client.queued
        self._loop = loop
        self._order: deque[_PendingAck] = deque()
        self._ready = 0
        self._settled = 0  # messages settled since the last flush
        self._idle_check = False
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
        if not self._ready:
            return
        if self._settled >= self.BATCH:
            self.flush()
        elif not self._queued():
            if self._loop is None:
                self.flush()
            elif not self._idle_check:
                # Nothing queued may only mean the socket was not read since: check
                # again after the loop's next turn has read it. Flushing at once would
                # ack each message alone, and the broker answer each ack with a single
                # message: twice the reads and writes per message.
                self._idle_check = True
                self._loop.call_soon(self._loop.call_soon, self._flush_if_idle)

    def _flush_if_idle(self) -> None:
        self._idle_check = False
        if self._ready and not self._queued():
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
        self._connections = 0

    def _context(
        self,
        operation: str,
        address: str,
        payload: bytes,
        headers: dict[str, str] | None,
        qos: int,
        retain: bool,
        attempt: int,
        transport: str | None,
    ) -> MessageContext[PublishersT, Any]:
        # Positional, in field order: cheaper than keywords on every message.
        return MessageContext(
            operation,
            address,
            payload,
            self.publishers,
            self.state,
            qos,
            retain,
            headers or {},
            attempt,
            transport or "mqtt",
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

    async def _send(
        self,
        address: str,
        payload: bytes,
        route: _Route | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        qos = route.qos if isinstance(route, Route) else 1
        await self.publish(address, payload, qos=qos, headers=headers)

    async def _send_dead_letter(self, target: str, letter: DeadLetter) -> None:
        """Publish at QoS 1 to `<target>/<operation>/<reason code>/<original topic>`,
        with the metadata as user properties on MQTT 5.

        mosquitto drops a publish over its `message_size_limit` without a word (and
        does not announce the limit), so the size is checked here, against
        MQTT_MAX_PACKET_SIZE or the smaller maximum packet size the broker announced
        (MQTT 5).
        """
        topic = mqtt_topic(target, letter)
        properties = letter.metadata() if self.settings.mqtt_protocol == "5" else None
        size = mqtt_packet_size(topic, letter.payload, properties)
        limit = self.settings.mqtt_max_packet_size
        # A client adapter that knows the broker's announced limit says so.
        announced = getattr(self.transport, "max_packet_size", None)
        if isinstance(announced, int) and announced > 0:
            limit = min(limit, announced)
        check_mqtt_size(topic, size, limit)
        await self.publish(topic, letter.payload, qos=1, headers=properties)

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
        """Publish through the current connection (the transport `Publishers` uses).

        While the service is not connected, the message waits in the outgoing buffer
        and goes out after the connection is back, in order (OUTGOING_BUFFER_SIZE,
        OUTGOING_BUFFER_TIMEOUT): raises `PublishBufferFull` or `PublishTimeout`.
        """
        with self._publishing(topic, payload, headers) as carried:

            def publishing() -> Awaitable[None]:
                return self.transport.publish(
                    topic, payload, qos=qos, retain=retain, headers=carried
                )

            await self._publish_through_outbox(publishing)
        self.service_stats.published += 1

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

    def client(
        self, client_id: str | None = None, session_expiry: int | None = None
    ) -> MqttClient:
        """The client library's adapter (MQTT_CLIENT), built from the settings,
        connecting as `client_id` and keeping its session for `session_expiry` seconds
        (MQTT 5) instead of the settings' when given."""
        return client_for(self.settings, client_id, session_expiry)

    async def open_dead_letter_session(self) -> None:
        """Make sure the broker keeps a persistent session subscribed to the dead
        letters, where `dead-letters` collects them (QoS 1, under
        `dead_letter_client_id`)."""
        client = self.client(dead_letter_client_id(self.settings), NEVER_EXPIRES)
        await client.connect()
        try:
            await client.subscribe(dead_letter_filter(self.settings), 1)
        finally:
            await client.disconnect()

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
        self._dead_letter_session_open = not (
            settings.mqtt_dead_letter_session and settings.mqtt_dead_letter_topic
        )
        backoff = Backoff(
            settings.reconnect_initial_delay, settings.reconnect_max_delay
        )
        async with self._operating():
            await self._reconnecting(client, backoff)
        self.logger.info("stopped")

    async def _reconnecting(self, client: MqttClient, backoff: Backoff) -> None:
        """Connect, serve, and connect again whenever the broker is lost, until
        stopped."""
        settings = self.settings
        stats_task = self._start_stats()
        self._link_down()  # publishes wait for the first connection
        inbox = self._inbox(self._handle)
        inbox.start()
        try:
            while not self._stopping.is_set():
                try:
                    await self._connected(client, backoff, inbox)
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
            await self._close_inbox(inbox)
            if stats_task is not None:
                stats_task.cancel()
            self._abandon_outbox()

    async def _connected(
        self, client: MqttClient, backoff: Backoff, inbox: Inbox[Delivery]
    ) -> None:
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
            if self._connections:
                self.service_stats.reconnects += 1
            self._connections += 1
            if not self._dead_letter_session_open:
                await self._open_dead_letter_session_once()
            await self._serve(client, inbox)
        finally:
            self._link_down()
            await client.disconnect()

    @contextlib.asynccontextmanager
    async def dead_letters(self) -> AsyncIterator[MqttDeadLetters]:
        """The dead letters for `python -m <package> dead-letters`: those of the
        dead-letter session are collected into the spool first, so the spool holds
        them all."""
        settings = self.settings
        client = self.client(dead_letter_client_id(settings), NEVER_EXPIRES)
        try:
            await client.connect()
        except ConnectionLost as exc:
            raise CommandError(
                f"cannot reach the MQTT broker at {settings.mqtt_host}:"
                f"{settings.mqtt_port}: {exc}"
            ) from None
        try:
            await collect_dead_letters(client, settings, self.spool)
            qos = {route.operation: route.qos for route in self.routes}
            yield MqttDeadLetters(client, self.spool, qos)
        except ConnectionLost as exc:
            raise CommandError(f"lost the MQTT broker: {exc}") from None
        finally:
            await client.disconnect()

    async def _open_dead_letter_session_once(self) -> None:
        try:
            await self.open_dead_letter_session()
        except ConnectionLost as exc:
            self.logger.warning(
                "could not open the dead-letter session %s: %s",
                dead_letter_client_id(self.settings),
                exc,
            )
            return
        self._dead_letter_session_open = True

    async def _serve(self, client: MqttClient, inbox: Inbox[Delivery]) -> None:
        """Read messages into the inbox until stopped or the connection is lost; the
        inbox's workers handle them meanwhile."""
        acks = Acks(
            client, lambda: client.queued() + len(inbox), asyncio.get_running_loop()
        )
        reader = asyncio.create_task(self._read(client, acks, inbox))
        stopper = asyncio.create_task(self._stopping.wait())
        self._link_up()
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({reader})
        if not reader.cancelled() and reader.exception() is not None:
            # The connection is gone: the broker redelivers what was not
            # acknowledged, and the acks of this connection are void. Handlers in
            # progress finish meanwhile; what they publish waits for the next
            # connection.
            acks.close()
            inbox.clear()
            reader.result()
        # Stopping. What waited in the inbox stays unacknowledged (QoS 1 and 2:
        # redelivered); the handlers in progress may finish.
        await self._close_inbox(inbox)
        # Acknowledge what was handled before the connection closes; an unfinished
        # message stays unacknowledged, and so does everything after it.
        acks.flush()

    async def _read(
        self, client: MqttClient, acks: Acks, inbox: Inbox[Delivery]
    ) -> None:
        """Take every message as it comes, so that the client's own queue stays short.

        A QoS 0 message finding the inbox full is dropped. QoS 1 and 2 messages are
        never dropped: the broker's in-flight window bounds them, since their acks
        wait for the handlers (mosquitto's max_inflight_messages for MQTT 3.1.1, the
        service's Receive Maximum, MAX_PENDING_MESSAGES, for MQTT 5). Pausing the
        reads instead would hold back the broker's acks of the handlers' own QoS 1
        publishes, which they wait for. (mosquitto 2.0.11 does not hold to its
        window: after each ack it sends a window's worth more.)
        """
        dead_letter_topic = self.settings.mqtt_dead_letter_topic
        below_dead_letter_topic = dead_letter_topic + "/"

        def received(delivery: Delivery) -> None:
            topic = delivery.topic
            if topic == dead_letter_topic or topic.startswith(below_dead_letter_topic):
                # The service's own dead letters, should its filters take them in.
                acks.done(acks.expect(delivery))
                return
            delivery.acks = acks
            if delivery.qos == 0:
                if not inbox.offer(delivery, droppable=True):
                    self._dropped(topic)
                return
            delivery.pending = acks.expect(delivery)
            inbox.offer(delivery, droppable=False)

        # Taken in the client's own read callback: no task, queue or wait between the
        # socket and the inbox.
        client.listen(received)
        try:
            await client.lost()
        finally:
            client.listen(None)

    async def _handle(self, delivery: Delivery) -> None:
        acks, pending = delivery.acks, delivery.pending
        assert acks is not None
        try:
            result = await self._dispatch(
                self._table,
                delivery.topic,
                delivery.payload,
                delivery.headers,
                delivery.response_topic,
                qos=delivery.qos,
                retain=delivery.retain,
                redeliverable=pending is not None,
            )
        except Exception:
            self.logger.exception("unexpected error on %s", delivery.topic)
            # Not acknowledged: the broker redelivers it on the next connection.
            acks.skip(pending)
            return
        if result.settled:
            acks.done(pending)
        else:
            # Its dead letter could not be published: the broker redelivers it on the
            # next connection.
            acks.skip(pending)


async def collect_dead_letters(
    client: MqttClient, settings: MqttSettings, spool: Spool
) -> int:
    """Move the dead letters queued for the dead-letter session into `spool`, each
    acknowledged once it is on disk; the number moved.

    Stops when none came for `COLLECT_QUIET` seconds, or when the spool is full (what is
    left stays queued for the next time).
    """
    base = settings.mqtt_dead_letter_topic
    await client.subscribe(dead_letter_filter(settings), 1)
    moved = 0
    while True:
        try:
            delivery = await asyncio.wait_for(client.receive(), COLLECT_QUIET)
        except TimeoutError:
            return moved
        letter = from_mqtt(base, delivery.topic, delivery.payload, delivery.headers)
        if letter is not None:
            if not await asyncio.to_thread(spool.put, letter):
                raise CommandError(
                    f"the spool {spool.directory} is full (DEAD_LETTER_SPOOL_MAX_SIZE "
                    f"{spool.max_bytes} bytes); {moved} dead letters were collected "
                    "into it, the others wait in the broker's session"
                )
            moved += 1
        if delivery.qos:
            client.ack(delivery.mid, delivery.qos)


class MqttDeadLetters:
    """The dead letters of an MQTT service (all in the spool by now) and the client
    that sends them back."""

    def __init__(self, client: MqttClient, spool: Spool, qos: dict[str, int]) -> None:
        self._client = client
        self._spool = spool
        self._qos = qos

    def stores(self) -> Sequence[DeadLetterStore]:
        return [SpoolStore(self._spool)]

    async def republish(self, letter: DeadLetter) -> None:
        """The original, to its topic, at its operation's QoS (at least 1)."""
        await self._client.publish(
            letter.address,
            letter.payload,
            qos=max(1, self._qos.get(letter.operation, 1)),
            headers=letter.original_headers(),
        )
