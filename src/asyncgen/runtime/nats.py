"""The NATS service: the core's receive path over nats-py, with JetStream.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import SecretStr

from .commands import CommandError, DeadLetterStore, Kept, SpoolStore
from .core import (
    Backoff,
    CoreSettings,
    DispatchResult,
    PublishersT,
    RequestRejected,
    ServiceCore,
    StartupError,
    StateT,
    rejected,
)
from .deadletters import DeadLetter, TooLarge, nats_size
from .flow import Inbox
from .outbox import Disconnected, PublishBufferFull, PublishTimeout
from .routing import Route as _Route
from .routing import RouteTable

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

__all__ = [
    "MessageContext",
    "NatsService",
    "NoResponders",
    "PublishBufferFull",
    "PublishTimeout",
    "RequestRejected",
    "RequestTimeout",
    "Route",
]


class NatsSettings(CoreSettings, Protocol):
    """The settings a NATS service reads (a generated `Settings` has them all)."""

    @property
    def nats_url(self) -> str: ...
    @property
    def nats_user(self) -> str | None: ...
    @property
    def nats_password(self) -> SecretStr | None: ...
    @property
    def nats_token(self) -> SecretStr | None: ...
    @property
    def nats_creds(self) -> Path | None: ...
    @property
    def nats_tls_ca_file(self) -> Path | None: ...
    @property
    def nats_tls_cert_file(self) -> Path | None: ...
    @property
    def nats_tls_key_file(self) -> Path | None: ...
    @property
    def nats_name(self) -> str: ...
    @property
    def nats_queue(self) -> str | None: ...
    @property
    def nats_dead_letter_subject(self) -> str: ...
    @property
    def nats_dead_letter_stream(self) -> str: ...
    @property
    def nats_request_timeout(self) -> float: ...
    @property
    def nats_reconnect_wait(self) -> float: ...
    @property
    def nats_reconnect_max_wait(self) -> float: ...
    @property
    def nats_connect_timeout(self) -> float: ...
    @property
    def jetstream_fetch_batch(self) -> int: ...
    @property
    def jetstream_nak_delay(self) -> float: ...
    @property
    def jetstream_max_deliver(self) -> int: ...
    @property
    def jetstream_ack_wait(self) -> float: ...


@dataclass
class MessageContext(Generic[PublishersT, StateT]):
    """What a handler knows about a message besides its validated payload (see
    `ServiceCore._context`)."""

    #: The operation id in the AsyncAPI document.
    operation: str
    #: The concrete subject the message arrived on.
    subject: str
    #: The payload exactly as received.
    payload: bytes
    #: Send operations of this service, ready to publish.
    publishers: PublishersT
    #: What the project's lifespan yielded: its dependencies (database pool, clients).
    state: StateT
    headers: dict[str, str] = field(default_factory=dict)
    #: 1 the first time the handler gets this message, 2 when it is tried again after
    #: failing (HANDLER_RETRIES, or JetStream's redelivery), and so on.
    attempt: int = 1
    #: How the message came: "nats", or "http" (POST /operations/...).
    transport: str = "nats"


@dataclass(frozen=True)
class Route(_Route):
    """A receive operation's route, with its queue group or JetStream consumer."""

    queue: str | None = None
    #: JetStream stream and durable consumer, for operations that must lose no message.
    stream: str | None = None
    durable: str | None = None


class NoResponders(Exception):
    """A request found nobody subscribed to its subject."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"no responders on {subject}")
        self.subject = subject


class RequestTimeout(Exception):
    """A request got no reply in time."""

    def __init__(self, subject: str, timeout: float) -> None:
        super().__init__(f"no reply on {subject} within {timeout:g} s")
        self.subject = subject
        self.timeout = timeout


class Transport(Protocol):
    """Where published messages go: the NATS connection, or a list in memory (tests)."""

    async def publish(
        self, subject: str, payload: bytes, /, *, headers: dict[str, str] | None = None
    ) -> None: ...

    async def request(
        self,
        subject: str,
        payload: bytes,
        /,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> bytes: ...


@dataclass(frozen=True)
class PublishedMessage:
    subject: str
    payload: bytes
    headers: dict[str, str] | None = None


@dataclass
class MemoryTransport:
    """Keeps published messages in a list: `dispatch()`'s transport without a broker."""

    published: list[PublishedMessage] = field(default_factory=list)
    #: Replies that `request()` returns, by subject.
    replies: dict[str, bytes] = field(default_factory=dict)

    async def publish(
        self, subject: str, payload: bytes, /, *, headers: dict[str, str] | None = None
    ) -> None:
        self.published.append(PublishedMessage(subject, payload, headers))

    async def request(
        self,
        subject: str,
        payload: bytes,
        /,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        self.published.append(PublishedMessage(subject, payload, headers))
        if subject not in self.replies:
            raise NoResponders(subject)
        return self.replies[subject]


class NatsTransport:
    """Publishes and requests through a NATS connection."""

    def __init__(self, connection: NATS) -> None:
        self._connection = connection

    async def publish(
        self, subject: str, payload: bytes, /, *, headers: dict[str, str] | None = None
    ) -> None:
        try:
            await self._connection.publish(subject, payload, headers=headers)
        except nats.errors.ConnectionClosedError as exc:
            raise Disconnected(str(exc) or "the connection is closed") from exc

    async def request(
        self,
        subject: str,
        payload: bytes,
        /,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The reply's payload; raises `RequestRejected` when the reply is an error
        reply (the request was invalid, or its handler failed)."""
        try:
            reply = await self._connection.request(
                subject, payload, timeout=timeout, headers=headers
            )
        except nats.errors.NoRespondersError as exc:
            raise NoResponders(subject) from exc
        except nats.errors.TimeoutError as exc:
            raise RequestTimeout(subject, timeout) from exc
        error = rejected(subject, reply.headers, reply.data)
        if error is not None:
            raise error
        return reply.data


def dead_letter_stream_config(settings: NatsSettings) -> dict[str, Any]:
    """The dead-letter stream: file storage, kept until replayed or purged (no age,
    count or size limit; change these with `nats stream edit` when needed)."""
    return {
        "name": settings.nats_dead_letter_stream,
        "subjects": [settings.nats_dead_letter_subject],
        "storage": "file",
    }


async def ensure_dead_letter_stream(
    js: JetStreamContext, settings: NatsSettings
) -> None:
    """Create the dead-letter stream unless it exists."""
    try:
        await js.stream_info(settings.nats_dead_letter_stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(**dead_letter_stream_config(settings))


class _AttemptFailed(Exception):
    """Ends one connection attempt (see `NatsService._connect_once`)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def server_names(urls: list[str]) -> str:
    """The servers as host:port, without any credentials the URLs carry."""
    names = []
    for url in urls:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        names.append(f"{parts.hostname}:{parts.port or 4222}")
    return ", ".join(names)


def connect_options(settings: NatsSettings) -> dict[str, Any]:
    """nats-py's `connect()` options from the settings, callbacks aside."""
    servers = [url.strip() for url in settings.nats_url.split(",") if url.strip()]
    options: dict[str, Any] = {
        "servers": servers,
        "name": settings.nats_name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": settings.nats_reconnect_wait,
        "connect_timeout": settings.nats_connect_timeout,
    }
    if settings.nats_user:
        options["user"] = settings.nats_user
    if settings.nats_password:
        options["password"] = settings.nats_password.get_secret_value()
    if settings.nats_token:
        options["token"] = settings.nats_token.get_secret_value()
    if settings.nats_creds:
        options["user_credentials"] = str(settings.nats_creds)
    if settings.nats_tls_ca_file or settings.nats_tls_cert_file:
        cafile = str(settings.nats_tls_ca_file) if settings.nats_tls_ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        if settings.nats_tls_cert_file is not None:
            key = (
                str(settings.nats_tls_key_file) if settings.nats_tls_key_file else None
            )
            context.load_cert_chain(str(settings.nats_tls_cert_file), key)
        options["tls"] = context
    return options


def websocket_support(settings: NatsSettings) -> None:
    """Refuse `ws://` and `wss://` servers when aiohttp, nats-py's WebSocket
    transport, is not installed: nats-py would fail at each attempt instead."""
    servers = connect_options(settings)["servers"]
    websocket = [url for url in servers if url.startswith(("ws://", "wss://"))]
    if websocket and importlib.util.find_spec("aiohttp") is None:
        raise StartupError(
            f"NATS_URL names WebSocket servers ({server_names(websocket)}), which need "
            "aiohttp: install it (the project's `ws` extra: pip install -e '.[ws]')"
        )


class NatsService(ServiceCore[NatsSettings, PublishersT]):
    """A NATS service: `await service.run()` serves until SIGTERM or `stop()`.

    `dispatch()` runs the receive path without a server. The generated `Service`
    subclass gives the routes of its document.
    """

    address_word = "subject"
    messaging_system = "nats"

    def __init__(
        self,
        settings: NatsSettings,
        routes: Sequence[Route],
        transport: Transport | None,
        logger: str,
    ) -> None:
        super().__init__(settings, routes, logger)
        self.routes: Sequence[Route] = routes
        self.transport: Transport = transport or MemoryTransport()
        self._discarding: set[asyncio.Task[None]] = set()
        self._jetstream_errors: set[str] = set()
        self._connection: NATS | None = None
        # Dead letters go through JetStream, acknowledged by the stream, once the
        # dead-letter stream is known to exist.
        self._dead_letter_js: JetStreamContext | None = None

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
            headers or {},
            attempt,
            transport or "nats",
        )

    def _dead_letter_address(self) -> str | None:
        return self.settings.nats_dead_letter_subject

    def _trace_attributes(self) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            "messaging.client.id": self.settings.nats_name
        }
        servers = connect_options(self.settings)["servers"]
        if len(servers) == 1:
            server = servers[0] if "://" in servers[0] else f"nats://{servers[0]}"
            parts = urlsplit(server)
            if parts.hostname:
                attributes["server.address"] = parts.hostname
                attributes["server.port"] = parts.port or 4222
        return attributes

    async def _send(
        self,
        address: str,
        payload: bytes,
        route: _Route | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.publish(address, payload, headers=headers)

    async def _send_dead_letter(self, target: str, letter: DeadLetter) -> None:
        """Publish with the metadata in headers; through JetStream, acknowledged by
        the dead-letter stream, when there is one.

        nats-server closes the connection of a client that publishes more than its
        `max_payload` (headers included), so the size is checked here first."""
        headers = letter.metadata()
        connection = self._connection
        if connection is not None and connection.max_payload:
            size = nats_size(letter.payload, headers)
            if size > connection.max_payload:
                raise TooLarge(size, connection.max_payload)
        js = self._dead_letter_js
        if js is None:
            await self.publish(target, letter.payload, headers=headers)
        else:
            await js.publish(
                target,
                letter.payload,
                timeout=self.settings.nats_request_timeout,
                headers=headers,
            )

    @contextlib.asynccontextmanager
    async def dead_letters(self) -> AsyncIterator[NatsDeadLetters]:
        """The dead letters for `python -m <package> dead-letters`: the spool's, then
        the dead-letter stream's."""
        settings = self.settings
        options = {
            **connect_options(settings),
            # One attempt: nats-py's own loop before the first connection ends when
            # its error callback raises, and the reason is reported below.
            "allow_reconnect": False,
            "error_cb": _give_up,
        }
        try:
            connection = await nats.connect(**options)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise CommandError(
                f"cannot connect to NATS at {server_names(options['servers'])}: "
                f"{str(exc) or type(exc).__name__}"
            ) from None
        try:
            stores: list[DeadLetterStore] = [SpoolStore(self.spool)]
            if settings.nats_dead_letter_stream and settings.nats_dead_letter_subject:
                js = connection.jetstream()
                try:
                    await ensure_dead_letter_stream(js, settings)
                except (nats.errors.Error, OSError, TimeoutError) as exc:
                    raise CommandError(
                        f"cannot use the dead-letter stream "
                        f"{settings.nats_dead_letter_stream}: "
                        f"{str(exc) or type(exc).__name__}"
                    ) from None
                stores.append(StreamStore(js, settings))
            yield NatsDeadLetters(connection, stores)
            await connection.flush(timeout=10)
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _open_dead_letter_stream(self, connection: NATS) -> None:
        """Make sure the JetStream stream that keeps the dead letters exists (see
        `dead_letter_stream_config`); without it they are published plainly."""
        settings = self.settings
        name = settings.nats_dead_letter_stream
        if not name or not settings.nats_dead_letter_subject:
            return
        js = connection.jetstream()
        try:
            await ensure_dead_letter_stream(js, settings)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            self.logger.warning(
                "dead letters are published without being kept: the JetStream stream "
                "%s cannot be used (%s)",
                name,
                str(exc) or type(exc).__name__,
            )
            return
        self._dead_letter_js = js

    async def publish(
        self, subject: str, payload: bytes, /, *, headers: dict[str, str] | None = None
    ) -> None:
        """Publish through the current connection (the transport `Publishers` uses).

        While the service is not connected, the message waits in the outgoing buffer
        and goes out after the connection is back, in order (OUTGOING_BUFFER_SIZE,
        OUTGOING_BUFFER_TIMEOUT): raises `PublishBufferFull` or `PublishTimeout`.
        """
        with self._publishing(subject, payload, headers) as carried:

            def publishing() -> Awaitable[None]:
                return self.transport.publish(subject, payload, headers=carried)

            await self._publish_through_outbox(publishing)
        self.service_stats.published += 1

    async def request(
        self,
        subject: str,
        payload: bytes,
        /,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """Send a request and return its reply (the transport `Publishers` uses).

        A handler waiting for the reply gives its place to another worker meanwhile,
        so that a request answered by this same service is handled even at
        MAX_CONCURRENCY 1. Before the first connection, and while reconnecting, the
        request waits for the connection within its timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._publishing(subject, payload, headers) as carried:
            inbox = self._incoming
            if inbox is None:
                return await self._request(subject, payload, timeout, deadline, carried)
            async with inbox.lend():
                return await self._request(subject, payload, timeout, deadline, carried)

    async def _request(
        self,
        subject: str,
        payload: bytes,
        timeout: float,
        deadline: float,
        headers: dict[str, str] | None,
    ) -> bytes:
        loop = asyncio.get_running_loop()
        if not await self._outbox.wait_up(deadline - loop.time()):
            raise RequestTimeout(subject, timeout)
        return await self.transport.request(
            subject,
            payload,
            timeout=max(deadline - loop.time(), 0.001),
            headers=headers,
        )

    async def dispatch(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: dict[str, str] | None = None,
        reply_to: str | None = None,
        dead_letter_failures: bool = True,
    ) -> DispatchResult:
        """Route, validate and handle one message exactly as if it came from the server.

        `reply_to` is where a request/reply operation answers (the request's inbox).
        With `dead_letter_failures=False` a message whose handler raises is not
        dead-lettered, so that the caller can have it redelivered.
        """
        return await self._dispatch(
            self._table,
            subject,
            payload,
            headers,
            reply_to,
            dead_letter_failures=dead_letter_failures,
        )

    # -- the connection ----------------------------------------------------------------

    async def _on_error(self, error: Exception) -> None:
        if isinstance(error, nats.errors.SlowConsumerError):
            # The client's own pending limit (MAX_PENDING_MESSAGES) dropped it.
            self._dropped(error.subject)
            return
        self.logger.warning("NATS: %s", error or type(error).__name__)

    async def _on_disconnected(self) -> None:
        self._link_down()
        if not self._stopping.is_set():
            self.logger.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        # nats-py subscribes again before it calls back.
        self.service_stats.reconnects += 1
        self.logger.info("reconnected to NATS")
        self._link_up()

    async def _connect(self) -> NATS | None:
        """Connect, retrying with backoff and jitter; None when stopped first."""
        settings = self.settings
        servers = server_names(connect_options(settings)["servers"])
        backoff = Backoff(
            settings.nats_reconnect_wait, settings.nats_reconnect_max_wait
        )
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            connecting = asyncio.create_task(self._connect_once())
            stopper = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait(
                    {connecting, stopper},
                    timeout=5 * settings.nats_connect_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                stopper.cancel()
            if not connecting.done():
                connecting.cancel()  # stopped, or the attempt hangs
            try:
                return await connecting
            except _AttemptFailed as exc:
                reason = str(exc.error) or type(exc.error).__name__
            except asyncio.CancelledError:
                reason = f"no answer within {5 * settings.nats_connect_timeout:g} s"
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            if self._stopping.is_set():
                break
            wait = backoff.next()
            self.logger.warning(
                "cannot connect to NATS at %s (attempt %d): %s; retrying in %.1f s",
                servers,
                attempt,
                reason,
                wait,
            )
            await self._sleep_unless_stopped(wait)
        return None

    async def _connect_once(self) -> NATS:
        """One connection attempt: the connected client, or the error that stopped it.

        nats-py's own retry loop before the first connection is cut short by raising
        from its error callback: after a failed TLS handshake it hangs for good
        (nats-io/nats.py#718), and `_connect` retries with backoff instead.
        """
        client = NATS()
        connected = False
        settings = self.settings
        backoff = settings.nats_reconnect_wait

        async def on_error(error: Exception) -> None:
            nonlocal backoff
            if not connected:
                raise _AttemptFailed(error)
            if client.is_reconnecting:
                # nats-py waits `reconnect_time_wait` between two attempts on a server,
                # read afresh each time, and reports each failed one here: doubling it
                # gives the backoff that nats-py itself lacks.
                backoff = min(backoff * 2, settings.nats_reconnect_max_wait)
                client.options["reconnect_time_wait"] = backoff * random.uniform(
                    0.5, 1.0
                )
            await self._on_error(error)

        async def on_disconnected() -> None:
            if connected:
                await self._on_disconnected()

        async def on_reconnected() -> None:
            nonlocal backoff
            backoff = settings.nats_reconnect_wait
            client.options["reconnect_time_wait"] = backoff
            await self._on_reconnected()

        options = {
            **connect_options(settings),
            "error_cb": on_error,
            "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
        }
        try:
            await client.connect(**options)
        except BaseException:
            # Close the half-open socket in the background: closing can hang as well.
            closing = asyncio.create_task(self._discard(client))
            self._discarding.add(closing)
            closing.add_done_callback(self._discarding.discard)
            raise
        connected = True
        return client

    @staticmethod
    async def _discard(client: NATS) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(client.close(), 1.0)

    async def run(self) -> None:
        """Serve until `stop()` or SIGTERM/SIGINT."""
        self._catch_signals()
        websocket_support(self.settings)
        self._link_down()  # publishes wait for the first connection
        async with self._operating():
            await self._serve()
        self.logger.info("stopped")

    async def _serve(self) -> None:
        """Connect, subscribe, and serve until stopped."""
        connection = await self._connect()
        if connection is None:
            self._abandon_outbox()
            return
        self.transport = NatsTransport(connection)
        self._connection = connection
        await self._open_dead_letter_stream(connection)
        stats_task = self._start_stats()
        subscriptions: list[Subscription] = []
        consumers: list[asyncio.Task[None]] = []
        inbox = self._inbox(self._handle)
        inbox.start()
        try:
            # One subscription per subject and queue group, each knowing the routes its
            # messages can take.
            core: dict[tuple[str, str], list[Route]] = {}
            for route in self.routes:
                if route.stream is not None:
                    js = connection.jetstream()
                    consumers.append(
                        asyncio.create_task(self._consume_jetstream(js, route))
                    )
                else:
                    queue = route.queue or self.settings.nats_queue or ""
                    key = (route.address.subscription, queue)
                    core.setdefault(key, []).append(route)
            limit = self.settings.max_pending_messages
            for (subject, queue), routes in core.items():
                subscriptions.append(
                    await connection.subscribe(
                        subject,
                        queue=queue,
                        cb=self._receiver(RouteTable(routes), inbox),
                        # The callback only hands messages to the inbox; this bounds
                        # the client's own buffer if the loop falls behind even so.
                        pending_msgs_limit=limit,
                    )
                )
            url = connection.connected_url
            self.logger.info(
                "connected to %s; subscribed to %s",
                server_names([url.geturl()]) if url else "NATS",
                ", ".join(route.address.subscription for route in self.routes)
                or "nothing",
            )
            self._link_up()
            await self._stopping.wait()
        finally:
            self.connected.clear()
            await self._unsubscribe(subscriptions)
            await self._close_inbox(inbox)
            if consumers:
                await asyncio.wait(
                    consumers, timeout=self.settings.shutdown_grace_period
                )
            if stats_task is not None:
                stats_task.cancel()
            # Everything is unsubscribed and settled by now: flush what handlers
            # published, then close.
            with contextlib.suppress(Exception):
                await connection.flush(timeout=5)
            self._abandon_outbox()
            try:
                await connection.close()
            except (OSError, nats.errors.Error) as exc:
                # Stopped while the server was away: there is nothing left to close.
                self.logger.info(
                    "the connection closed with %s", exc or type(exc).__name__
                )

    async def _unsubscribe(self, subscriptions: list[Subscription]) -> None:
        """Stop the subscriptions; messages that still arrive are passed over (see
        `_receiver`), as with an unsubscribe."""
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    def _receiver(
        self, table: RouteTable, inbox: Inbox[tuple[RouteTable, Msg]]
    ) -> Callable[[Msg], Awaitable[None]]:
        """The callback of one subscription, routing among `table`'s routes only.

        It hands each message to the inbox and returns: handling in the callback
        would hold the subscription's next message, and with it the request a handler
        may be waiting for. A core message finding the inbox full is dropped (NATS
        core keeps nothing).
        """
        stopping = self._stopping
        dead_letters = self.settings.nats_dead_letter_subject

        async def receive(msg: Msg) -> None:
            if stopping.is_set() or msg.subject == dead_letters:
                return
            if not inbox.offer((table, msg), droppable=True):
                self._dropped(msg.subject)

        return receive

    async def _handle(self, item: tuple[RouteTable, Msg]) -> None:
        table, msg = item
        try:
            await self._dispatch(
                table, msg.subject, msg.data, msg.headers, msg.reply or None
            )
        except Exception:
            self.logger.exception("unexpected error on %s", msg.subject)

    async def _ensure_stream(self, js: JetStreamContext, route: Route) -> None:
        assert route.stream is not None
        try:
            await js.stream_info(route.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(
                name=route.stream, subjects=[route.address.subscription]
            )
            self.logger.info(
                "created JetStream stream %s for %s",
                route.stream,
                route.address.subscription,
            )

    async def _pull_subscribe(
        self, js: JetStreamContext, route: Route
    ) -> JetStreamContext.PullSubscription:
        """The stream (created when missing) and the route's durable pull consumer."""
        await self._ensure_stream(js, route)
        config = ConsumerConfig(ack_wait=self.settings.jetstream_ack_wait)
        return await js.pull_subscribe(
            route.address.subscription,
            durable=route.durable,
            stream=route.stream,
            config=config,
        )

    def _jetstream_unavailable(self, route: Route, exc: Exception) -> str:
        """What stands in the way of the route's consumer, in words, for the log."""
        if isinstance(
            exc, (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError)
        ):
            return (
                "the NATS server does not answer JetStream requests: JetStream is not "
                "enabled on it (start nats-server with -js, or add a `jetstream` block "
                "to its configuration)"
            )
        if isinstance(exc, nats.js.errors.APIError):
            return (
                f"cannot create or use JetStream stream {route.stream} for "
                f"{route.address.subscription}: {exc.description or exc}"
            )
        return str(exc) or type(exc).__name__

    async def _consume_jetstream(self, js: JetStreamContext, route: Route) -> None:
        """Fetch from the durable consumer; ack, nak to retry, or term when invalid."""
        settings = self.settings
        table = RouteTable([route])
        pull: JetStreamContext.PullSubscription | None = None
        backoff = Backoff(
            settings.nats_reconnect_wait, settings.nats_reconnect_max_wait
        )
        try:
            while not self._stopping.is_set():
                if pull is None:
                    try:
                        pull = await self._pull_subscribe(js, route)
                    except (nats.errors.Error, OSError) as exc:
                        problem = self._jetstream_unavailable(route, exc)
                        if problem not in self._jetstream_errors:
                            # Once: the service keeps trying quietly, with backoff.
                            self._jetstream_errors.add(problem)
                            self.logger.error(
                                "operation %s cannot receive: %s; retrying",
                                route.operation,
                                problem,
                            )
                        await self._sleep_unless_stopped(backoff.next())
                        continue
                    backoff.reset()
                try:
                    messages = await pull.fetch(
                        settings.jetstream_fetch_batch, timeout=1.0
                    )
                except (nats.errors.TimeoutError, TimeoutError):
                    continue  # nothing to fetch (nats-py raises either kind)
                except (nats.errors.Error, OSError) as exc:
                    self.logger.warning(
                        "JetStream consumer %s: %s; retrying",
                        route.durable,
                        str(exc) or type(exc).__name__,
                    )
                    await self._sleep_unless_stopped(backoff.next())
                    continue
                backoff.reset()
                for index, msg in enumerate(messages):
                    if self._stopping.is_set():
                        # Hand back what was fetched but not handled, for the next
                        # replica.
                        for rest in messages[index:]:
                            with contextlib.suppress(nats.errors.Error):
                                await rest.nak()
                        break
                    await self._settle(table, route, msg)
        finally:
            if pull is not None:
                with contextlib.suppress(nats.errors.Error):
                    await pull.unsubscribe()

    async def _keep_in_progress(self, msg: Msg) -> None:
        """Tell the server, every third of the ack wait, that the handler still works
        on `msg`, so that it is not redelivered meanwhile."""
        interval = self.settings.jetstream_ack_wait / 3
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.in_progress()

    async def _settle(self, table: RouteTable, route: Route, msg: Msg) -> None:
        keeping = asyncio.create_task(self._keep_in_progress(msg))
        try:
            result = await self._dispatch(
                table,
                msg.subject,
                msg.data,
                headers=msg.headers,
                dead_letter_failures=False,
                attempt=msg.metadata.num_delivered,
                redeliverable=True,
            )
        finally:
            keeping.cancel()
        try:
            if result.status == "handled":
                await msg.ack()
            elif result.status == "failed":
                delivered = msg.metadata.num_delivered
                if delivered >= self.settings.jetstream_max_deliver:
                    settled = await self._dead_letter(
                        route.operation,
                        "failed",
                        msg.subject,
                        msg.data,
                        result.reason or "handler failed",
                        headers=msg.headers,
                        attempt=delivered,
                        redeliverable=True,
                        logged=True,
                    )
                    await self._term_or_retry(msg, settled)
                else:
                    await msg.nak(delay=self.settings.jetstream_nak_delay)
            else:
                await self._term_or_retry(msg, result.settled)
        except (nats.errors.Error, OSError) as exc:
            self.logger.warning(
                "could not settle a JetStream message on %s: %s", msg.subject, exc
            )

    async def _term_or_retry(self, msg: Msg, settled: bool) -> None:
        """Done with a message that was dead-lettered; else (its dead letter could not
        be published) have it delivered again."""
        if settled:
            await msg.term()
        else:
            await msg.nak(delay=max(self.settings.jetstream_nak_delay, 1.0))


async def _give_up(error: Exception) -> None:
    raise error


class StreamStore:
    """The dead-letter stream as a store: read through a consumer of its own, which
    takes only the dead letters that were there when it started (replayed ones that
    fail again come back as new ones, for the next time)."""

    BATCH = 64

    def __init__(self, js: JetStreamContext, settings: NatsSettings) -> None:
        self._js = js
        self._stream = settings.nats_dead_letter_stream
        self._subject = settings.nats_dead_letter_subject
        self.name = f"the JetStream stream {self._stream}"

    async def letters(self) -> AsyncIterator[Kept]:
        info = await self._js.stream_info(self._stream)
        last = info.state.last_seq
        if not info.state.messages:
            return
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=60.0,
        )
        pull = await self._js.pull_subscribe(
            self._subject, stream=self._stream, config=config
        )
        try:
            while True:
                try:
                    messages = await pull.fetch(self.BATCH, timeout=2.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    return
                for msg in messages:
                    sequence = msg.metadata.sequence.stream
                    if sequence > last:
                        return
                    try:
                        letter = DeadLetter.from_metadata(msg.data, msg.headers or {})
                    except ValueError:
                        continue  # published there by someone else
                    yield Kept(letter, sequence)
                if messages[-1].metadata.num_pending == 0:
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await pull.unsubscribe()

    async def remove(self, kept: Kept) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self._js.delete_msg(self._stream, kept.key)


class NatsDeadLetters:
    """The dead letters of a NATS service and the connection that sends them back."""

    def __init__(self, connection: NATS, stores: Sequence[DeadLetterStore]) -> None:
        self._connection = connection
        self._stores = stores

    def stores(self) -> Sequence[DeadLetterStore]:
        return self._stores

    async def republish(self, letter: DeadLetter) -> None:
        """The original, to its subject, with its own headers."""
        await self._connection.publish(
            letter.address, letter.payload, headers=letter.original_headers()
        )
        # On the server before the dead letter is removed from where it was kept.
        await self._connection.flush(timeout=10)
