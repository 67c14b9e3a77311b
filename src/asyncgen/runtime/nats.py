"""The NATS service: the core's receive path over nats-py, with JetStream.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
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
from pydantic import SecretStr

from .core import Backoff, CoreSettings, DispatchResult, PublishersT, ServiceCore
from .routing import Route as _Route
from .routing import RouteTable

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue


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


@dataclass
class MessageContext(Generic[PublishersT]):
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
    headers: dict[str, str] = field(default_factory=dict)


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
        await self._connection.publish(subject, payload, headers=headers)

    async def request(
        self,
        subject: str,
        payload: bytes,
        /,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        try:
            reply = await self._connection.request(
                subject, payload, timeout=timeout, headers=headers
            )
        except nats.errors.NoRespondersError as exc:
            raise NoResponders(subject) from exc
        except nats.errors.TimeoutError as exc:
            raise RequestTimeout(subject, timeout) from exc
        return reply.data


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
        # With MAX_CONCURRENCY 1 the subscriptions' callbacks take turns at handling: a
        # lock does what a semaphore of one would, at less than half the cost.
        self._turn = asyncio.Lock()

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
            operation, address, payload, self.publishers, headers or {}
        )

    def _dead_letter_address(self) -> str | None:
        return self.settings.nats_dead_letter_subject

    def _trace_attributes(self) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            "messaging.client.id": self.settings.nats_name
        }
        servers = connect_options(self.settings)["servers"]
        if len(servers) == 1:
            parts = urlsplit(
                servers[0] if "://" in servers[0] else f"nats://{servers[0]}"
            )
            if parts.hostname:
                attributes["server.address"] = parts.hostname
                attributes["server.port"] = parts.port or 4222
        return attributes

    async def _send(self, address: str, payload: bytes, route: _Route | None) -> None:
        await self.publish(address, payload)

    async def publish(
        self, subject: str, payload: bytes, /, *, headers: dict[str, str] | None = None
    ) -> None:
        """Publish through the current connection (the transport `Publishers` uses)."""
        if self.tracing is not None and self.tracing.recording:
            with self.tracing.publishing(subject, payload, headers) as carried:
                await self.transport.publish(subject, payload, headers=carried)
            return
        await self.transport.publish(subject, payload, headers=headers)

    async def request(
        self,
        subject: str,
        payload: bytes,
        /,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """Publish a request and wait for its reply (`Publishers` request here)."""
        if self.tracing is not None and self.tracing.recording:
            with self.tracing.publishing(subject, payload, headers) as carried:
                return await self.transport.request(
                    subject, payload, timeout=timeout, headers=carried
                )
        return await self.transport.request(
            subject, payload, timeout=timeout, headers=headers
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
        self.logger.warning("NATS: %s", error or type(error).__name__)

    async def _on_disconnected(self) -> None:
        if not self._stopping.is_set():
            self.logger.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        self.logger.info("reconnected to NATS")

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
        connection = await self._connect()
        if connection is None:
            self.logger.info("stopped")
            return
        self.transport = NatsTransport(connection)
        stats_task = self._start_stats()
        subscriptions: list[Subscription] = []
        consumers: list[asyncio.Task[None]] = []
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
            shared = len(core) > 1
            for (subject, queue), routes in core.items():
                subscriptions.append(
                    await connection.subscribe(
                        subject,
                        queue=queue,
                        cb=self._receiver(RouteTable(routes), shared),
                    )
                )
            url = connection.connected_url
            self.logger.info(
                "connected to %s; subscribed to %s",
                server_names([url.geturl()]) if url else "NATS",
                ", ".join(route.address.subscription for route in self.routes)
                or "nothing",
            )
            await self._stopping.wait()
        finally:
            await self._unsubscribe(subscriptions)
            if consumers:
                await asyncio.wait(
                    consumers, timeout=self.settings.shutdown_grace_period
                )
            await self._drain()
            if stats_task is not None:
                stats_task.cancel()
            # Everything is unsubscribed and settled by now: flush what handlers
            # published, then close.
            with contextlib.suppress(Exception):
                await connection.flush(timeout=5)
            try:
                await connection.close()
            except (OSError, nats.errors.Error) as exc:
                # Stopped while the server was away: there is nothing left to close.
                self.logger.info(
                    "the connection closed with %s", exc or type(exc).__name__
                )
        self.logger.info("stopped")

    async def _unsubscribe(self, subscriptions: list[Subscription]) -> None:
        """Stop the subscriptions once the handler each may be running has finished.

        Draining waits for the callback in progress; the messages the client buffered
        behind it are passed over (see `_receiver`), as with an unsubscribe.
        """
        drains = [
            subscription.drain()  # type: ignore[no-untyped-call]  # not annotated
            for subscription in subscriptions
        ]
        draining = asyncio.gather(*drains, return_exceptions=True)
        try:
            await asyncio.wait_for(draining, self.settings.shutdown_grace_period)
        except TimeoutError:
            self.logger.warning("handlers did not finish within the grace period")
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    def _receiver(
        self, table: RouteTable, shared: bool
    ) -> Callable[[Msg], Awaitable[None]]:
        """The callback of one subscription, routing among `table`'s routes only.

        `shared` says whether other subscriptions' callbacks take turns with this one.
        """
        stopping = self._stopping
        logger = self.logger

        if self.settings.max_concurrency == 1:
            # nats-py awaits the callback before it delivers the subscription's next
            # message, so running the handler in it keeps messages in order without a
            # task per message. The turn keeps other subscriptions' handlers out
            # meanwhile. The callback calls `_dispatch` itself, not through `_handle`:
            # at a few microseconds per message, one coroutine less counts.
            dispatch = self._dispatch
            turn = self._turn

            async def handle_inline(msg: Msg) -> None:
                if stopping.is_set():
                    return
                if shared:
                    await turn.acquire()
                try:
                    await dispatch(
                        table, msg.subject, msg.data, msg.headers, msg.reply or None
                    )
                except Exception:
                    logger.exception("unexpected error on %s", msg.subject)
                finally:
                    if shared:
                        turn.release()

            return handle_inline

        async def handle_in_task(msg: Msg) -> None:
            if stopping.is_set():
                return
            # Holding a slot before the next message is taken bounds the handlers
            # running at once.
            await self._slots.acquire()
            self._start_task(self._handle(table, msg))

        return handle_in_task

    async def _handle(self, table: RouteTable, msg: Msg) -> None:
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

    async def _consume_jetstream(self, js: JetStreamContext, route: Route) -> None:
        """Fetch from the durable consumer; ack, nak to retry, or term when invalid."""
        settings = self.settings
        table = RouteTable([route])
        pull: JetStreamContext.PullSubscription | None = None
        try:
            while not self._stopping.is_set():
                try:
                    if pull is None:
                        await self._ensure_stream(js, route)
                        pull = await js.pull_subscribe(
                            route.address.subscription,
                            durable=route.durable,
                            stream=route.stream,
                        )
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
                    await asyncio.sleep(settings.nats_reconnect_wait)
                    continue
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

    async def _settle(self, table: RouteTable, route: Route, msg: Msg) -> None:
        result = await self._dispatch(
            table,
            msg.subject,
            msg.data,
            headers=msg.headers,
            dead_letter_failures=False,
        )
        try:
            if result.status == "handled":
                await msg.ack()
            elif result.status == "failed":
                if msg.metadata.num_delivered >= self.settings.jetstream_max_deliver:
                    await self._dead_letter(
                        route.operation,
                        msg.subject,
                        msg.data,
                        result.reason or "handler failed",
                    )
                    await msg.term()
                else:
                    await msg.nak(delay=self.settings.jetstream_nak_delay)
            else:
                await msg.term()
        except (nats.errors.Error, OSError) as exc:
            self.logger.warning(
                "could not settle a JetStream message on %s: %s", msg.subject, exc
            )
