"""The protocol-neutral service: routing, validation, handlers, replies, dead letters,
counters, concurrency and shutdown. Protocol adapters (`mqtt`, `nats`) subclass
`ServiceCore` with what differs: connecting, subscribing, acknowledging, publishing.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
)
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

import pydantic

from .addresses import Address
from .deadletters import DeadLetter, ReasonCode, TooLarge
from .flow import Inbox
from .outbox import Outbox, Publish, PublishBufferFull
from .payloads import encode
from .routing import Route, RouteTable, describe, rejection
from .spool import Spool

if TYPE_CHECKING:  # imported when tracing starts: only with opentelemetry-api
    from opentelemetry.trace import TracerProvider
    from opentelemetry.util.types import AttributeValue

    from .tracing import Tracing

Status = Literal["handled", "invalid", "failed", "unrouted"]

#: Error replies carry their status (400 invalid request, 500 handler failed) and the
#: reason in these headers (NATS headers, MQTT 5 user properties).
STATUS_HEADER = "asyncgen-status"
ERROR_HEADER = "asyncgen-error"
#: The longest wait between two attempts of a failing handler.
MAX_RETRY_BACKOFF = 60.0


class RequestRejected(Exception):
    """The service answering a request refused it: the request was invalid (status
    400) or its handler failed (status 500). `reason` says why."""

    def __init__(self, address: str, status: int, reason: str) -> None:
        super().__init__(f"request on {address} rejected ({status}): {reason}")
        self.address = address
        self.status = status
        self.reason = reason


def error_reply(status: int, reason: str) -> tuple[bytes, dict[str, str]]:
    """The payload and headers of an error reply."""
    one_line = " ".join(reason.split())
    body = json.dumps({"status": status, "error": reason}).encode()
    return body, {STATUS_HEADER: str(status), ERROR_HEADER: one_line}


def rejected(
    address: str, headers: dict[str, str] | None, payload: bytes
) -> RequestRejected | None:
    """The error a reply stands for, or None when it is an answer."""
    status = (headers or {}).get(STATUS_HEADER)
    if status is None or status.startswith("2"):
        return None
    reason = (headers or {}).get(ERROR_HEADER) or payload.decode("utf-8", "replace")
    return RequestRejected(address, int(status) if status.isdigit() else 0, reason)


class CoreSettings(Protocol):
    """The settings every service reads (a generated `Settings` has them all)."""

    @property
    def max_concurrency(self) -> int: ...
    @property
    def handler_timeout(self) -> float | None: ...
    @property
    def shutdown_grace_period(self) -> float: ...
    @property
    def stats_interval(self) -> float: ...
    @property
    def log_rejections_per_minute(self) -> int: ...
    @property
    def event_loop(self) -> Literal["asyncio", "uvloop"]: ...
    @property
    def handler_retries(self) -> int: ...
    @property
    def handler_retry_backoff(self) -> float: ...
    @property
    def handler_retries_per_operation(self) -> dict[str, int]: ...
    @property
    def handler_retry_backoff_per_operation(self) -> dict[str, float]: ...
    @property
    def max_pending_messages(self) -> int: ...
    @property
    def outgoing_buffer_size(self) -> int: ...
    @property
    def outgoing_buffer_timeout(self) -> float: ...
    @property
    def http_port(self) -> int | None: ...
    @property
    def http_host(self) -> str: ...
    @property
    def http_token(self) -> pydantic.SecretStr | None: ...
    @property
    def http_max_body(self) -> int: ...
    @property
    def dead_letter_spool_dir(self) -> Path: ...
    @property
    def dead_letter_spool_max_size(self) -> int: ...
    @property
    def tracing(self) -> str:
        """`auto`: trace when opentelemetry-api is installed; `off`: never."""
        ...


S = TypeVar("S", bound=CoreSettings)
T = TypeVar("T")
PublishersT = TypeVar("PublishersT")
#: What the project's lifespan yields: handlers reach it as `context.state`.
StateT = TypeVar("StateT")
#: The project's startup/shutdown hook: given the service, an async context manager
#: that builds the service's dependencies, yields them, and closes them on exit.
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class StartupError(Exception):
    """The service cannot start as configured; the message says what to change."""


@dataclass(frozen=True)
class DispatchResult:
    """What became of one message.

    Frozen, so that the result of a handled message can be shared: most handlers return
    nothing, and building a result for each of their messages costs more than the
    routing.
    """

    status: Status
    operation: str | None = None
    reason: str | None = None
    reply: Any = None
    #: False when the message must stay unacknowledged, so that the broker delivers it
    #: again: its dead letter could not be published (see `ServiceCore._dead_letter`).
    settled: bool = True


@dataclass
class OperationStats:
    """Counters of one receive operation."""

    received: int = 0
    handled: int = 0
    invalid: int = 0
    failed: int = 0
    #: Handler attempts that failed and were tried again.
    retried: int = 0
    dead_lettered: int = 0
    #: Dead letters the broker would not take, kept in the local spool instead.
    spooled: int = 0
    #: Dead letters neither published nor spooled (the spool was full) of messages the
    #: broker would not deliver again.
    dead_letters_lost: int = 0


@dataclass
class ServiceStats:
    """Counters of the whole service."""

    #: Messages the broker would not keep (MQTT QoS 0, NATS core) dropped because
    #: MAX_PENDING_MESSAGES were already waiting for a handler.
    dropped: int = 0
    #: Publishes refused because the outgoing buffer was full.
    publish_buffer_full: int = 0
    #: Messages the service published: replies, dead letters and its publishers' own.
    published: int = 0
    #: Connections made after the first one was lost.
    reconnects: int = 0


class Timings(Protocol):
    """Where handler durations go when something reads them (the metrics)."""

    def observe(self, operation: str, seconds: float) -> None: ...


@dataclass
class _LogWindow:
    start: float
    lines: int = 0
    held_back: int = 0


class LogThrottle:
    """At most `limit` log lines a minute per subject (an operation, say); the others
    are counted, and the count is logged with the first line let through after the
    minute.

    A flood of malformed messages then costs a few lines a minute instead of one each;
    the stats (STATS_INTERVAL) and the dead letters still count every message.
    """

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.logger = logger or logging.getLogger(__name__)
        self._windows: dict[str, _LogWindow] = {}

    def allow(self, subject: str) -> bool:
        if self.limit <= 0:
            return True
        now = self.clock()
        window = self._windows.get(subject)
        if window is None or now - window.start >= self.window:
            if window is not None and window.held_back:
                self.logger.warning(
                    "%s: %d more log lines held back in the last %.0f s",
                    subject,
                    window.held_back,
                    now - window.start,
                )
            window = self._windows[subject] = _LogWindow(now)
        window.lines += 1
        if window.lines <= self.limit:
            return True
        window.held_back += 1
        return False


class Backoff:
    """Exponential backoff with jitter: each wait doubles, up to `maximum`, and is
    drawn between half and all of it so that replicas do not retry in step."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = initial
        self._jitter = jitter

    def next(self) -> float:
        """The wait before the next attempt; the one after it will be longer."""
        wait = self.delay * self._jitter(0.5, 1.0)
        self.delay = min(self.delay * 2, self.maximum)
        return wait

    def reset(self) -> None:
        self.delay = self.initial


class ServiceCore(Generic[S, PublishersT]):
    """The receive path and the lifecycle every protocol shares.

    Subclasses say how a context is made (`_context`), where dead letters and replies
    go (`_dead_letter_address`, `_send`) and how the service connects (`run`).
    """

    #: How log lines and dead letters name an address: "topic" or "subject".
    address_word = "address"
    #: `messaging.system` in traces: "mqtt" or "nats".
    messaging_system = "messaging"
    #: Where each send operation publishes, as (operation id, address) (the generated
    #: service's): traces name a publish by its operation and address template.
    sends: ClassVar[Sequence[tuple[str, Address[Any]]]] = ()
    settings: S
    publishers: PublishersT
    #: The project's startup/shutdown hook (its `lifespan.py`), entered by `run()` and
    #: `started()`; the generated `Service` sets it.
    lifespan: Lifespan | None = None
    #: Makes the spans of messages and publishes; None when not tracing.
    tracing: Tracing | None = None

    def __init__(self, settings: S, routes: Sequence[Route], logger: str) -> None:
        self.settings = settings
        self.logger = logging.getLogger(logger)
        self.routes: Sequence[Route] = routes
        self._table = RouteTable(self.routes)
        self.stats = {route.operation: OperationStats() for route in self.routes}
        self._handled = {
            route.operation: DispatchResult("handled", route.operation)
            for route in self.routes
        }
        self._log_throttle = LogThrottle(
            settings.log_rejections_per_minute, logger=self.logger
        )
        self.service_stats = ServiceStats()
        self._retries = {
            route.operation: (
                settings.handler_retries_per_operation.get(
                    route.operation, settings.handler_retries
                ),
                settings.handler_retry_backoff_per_operation.get(
                    route.operation, settings.handler_retry_backoff
                ),
            )
            for route in self.routes
        }
        for name in (
            "handler_retries_per_operation",
            "handler_retry_backoff_per_operation",
        ):
            unknown = set(getattr(settings, name)) - set(self.stats)
            if unknown:
                self.logger.warning(
                    "%s names no receive operation: %s",
                    name.upper(),
                    ", ".join(sorted(unknown)),
                )
        self._stopping = asyncio.Event()
        #: Set while the service is connected and subscribed; cleared when the
        #: connection is lost and when stopping.
        self.connected = asyncio.Event()
        self._incoming: Inbox[Any] | None = None
        self._outbox = Outbox(
            settings.outgoing_buffer_size, settings.outgoing_buffer_timeout
        )
        #: Posted (HTTP) messages hold one while handled: at most MAX_CONCURRENCY of
        #: them at once, beside the inbox's workers for the broker's.
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        #: What the lifespan yielded (None until it ran): `context.state`.
        self.state: Any = None
        #: Handler durations, recorded only while metrics are served.
        self.timings: Timings | None = None
        self._running = False
        self._background: set[asyncio.Task[Any]] = set()
        self.spool = Spool(
            Path(settings.dead_letter_spool_dir), settings.dead_letter_spool_max_size
        )
        if settings.tracing != "off":
            with contextlib.suppress(ImportError):  # opentelemetry-api not installed
                self.start_tracing()

    # -- what adapters provide ---------------------------------------------------------

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
    ) -> Any:
        """The `MessageContext` a handler gets; `transport` is how the message came
        when not over the broker ("http").

        Each message gets a context of its own, and the service reads nothing back from
        it. Contexts are not frozen because a frozen dataclass sets each field through
        `object.__setattr__`, which made it the dearest step of the service's own work
        on a message.
        """
        raise NotImplementedError

    def _dead_letter_address(self) -> str | None:
        raise NotImplementedError

    async def _send(
        self,
        address: str,
        payload: bytes,
        route: Route | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish a reply (`route` is the operation answering), or an error reply
        with its status in `headers`."""
        raise NotImplementedError

    async def _send_dead_letter(self, target: str, letter: DeadLetter) -> None:
        """Publish `letter` under the dead-letter address `target`, confirmed by the
        broker where the protocol allows; `TooLarge` when it exceeds the broker's
        limit, any other exception when the broker cannot be reached."""
        raise NotImplementedError

    def _carries_trace_context(self) -> bool:
        """Whether messages can carry the trace context (in headers)."""
        return True

    def _trace_attributes(self) -> dict[str, AttributeValue]:
        """Attributes of every span: the server, the client id."""
        return {}

    # -- tracing -----------------------------------------------------------------------

    def start_tracing(self, tracer_provider: TracerProvider | None = None) -> None:
        """Trace messages and publishes with OpenTelemetry (see `tracing`), to
        `tracer_provider` or else the global one.

        Called when the service is made unless TRACING is `off`; raises ImportError when
        opentelemetry-api is not installed.
        """
        from .tracing import Tracing

        destinations = [*self.sends]
        destinations += [
            (route.operation, route.reply_address)
            for route in self.routes
            if route.reply_address is not None
        ]
        self.tracing = Tracing(
            self.messaging_system,
            self.routes,
            destinations,
            self._dead_letter_address(),
            carries_context=self._carries_trace_context(),
            attributes=self._trace_attributes(),
            tracer_provider=tracer_provider,
        )

    # -- the connection and the outgoing buffer ----------------------------------------

    def _link_up(self) -> None:
        """Connected and subscribed: buffered publishes go out, in order."""
        if not self._stopping.is_set():
            self.connected.set()
        self._outbox.up()

    def _link_down(self) -> None:
        """The connection is gone, or not there yet: publishes wait in the buffer."""
        self.connected.clear()
        self._outbox.down()

    async def _publish_through_outbox(self, publish: Publish) -> None:
        try:
            await self._outbox.send(publish)
        except PublishBufferFull:
            self.service_stats.publish_buffer_full += 1
            raise

    def _abandon_outbox(self) -> None:
        count = self._outbox.abandon()
        if count:
            self.logger.warning(
                "stopped with %d publishes still waiting for a connection; not sent",
                count,
            )

    def _publishing(
        self, address: str, payload: bytes, headers: dict[str, str] | None
    ) -> AbstractContextManager[dict[str, str] | None]:
        """Around a publish: its producer span when tracing, which yields the headers
        with the trace context to publish with; else just the headers."""
        tracing = self.tracing
        if tracing is not None and tracing.recording:
            return tracing.publishing(address, payload, headers)
        return contextlib.nullcontext(headers)

    # -- the receive path --------------------------------------------------------------

    async def _dispatch(
        self,
        table: RouteTable,
        address: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
        reply_to: str | None = None,
        *,
        qos: int = 0,
        retain: bool = False,
        dead_letter_failures: bool = True,
        attempt: int | None = None,
        transport: str | None = None,
        send_reply: bool = True,
        redeliverable: bool = False,
        in_span: bool = False,
    ) -> DispatchResult:
        """Route, validate and handle one message among the routes of `table`.

        The routes whose address matches are tried most specific first, and each of
        their messages in turn: the first that the payload is takes it. A message that
        none takes is invalid, in the name of the most specific route. When tracing,
        all of it runs in a consumer span (`in_span` once it does).

        A failing handler is tried again, after a backoff, up to the operation's
        HANDLER_RETRIES times, unless `attempt` is given: then the broker redelivers
        (JetStream), and `attempt` is its delivery count.

        `transport` names where the message came from when not the broker ("http");
        with `send_reply=False` a reply is only returned, not published.

        `redeliverable` says that the broker delivers the message again unless it is
        acknowledged (QoS 1, JetStream): see `_dead_letter`.
        """
        tracing = self.tracing
        if tracing is not None and tracing.recording and not in_span:
            return await self._dispatch_in_span(
                tracing,
                table,
                address,
                payload,
                headers,
                reply_to,
                qos=qos,
                retain=retain,
                dead_letter_failures=dead_letter_failures,
                attempt=attempt,
                transport=transport,
                send_reply=send_reply,
                redeliverable=redeliverable,
            )
        refused: tuple[Route, str] | None = None
        for route in table.candidates(address):
            try:
                params = route.address.parse(address)
            except pydantic.ValidationError as exc:
                if refused is None:
                    reason = f"invalid {self.address_word} parameters: {describe(exc)}"
                    refused = (route, reason)
                continue
            if params is None:
                continue
            try:
                message = route.decode(payload)
            except ValueError as exc:
                if refused is None:
                    refused = (route, rejection(exc))
                continue
            break
        else:
            return await self._refuse(
                refused, address, payload, reply_to, headers, redeliverable
            )
        # Handled here rather than in a method of its own: at a few microseconds per
        # message, one coroutine less counts.
        stats = self.stats[route.operation]
        stats.received += 1
        timeout = self.settings.handler_timeout
        timings = self.timings
        tries = 1
        while True:
            context = self._context(
                route.operation,
                address,
                payload,
                headers,
                qos,
                retain,
                attempt or tries,
                transport,
            )
            if timings is not None:
                began = time.perf_counter()
            try:
                if route.with_params:
                    handling = route.handler(message, params, context)
                else:
                    handling = route.handler(message, context)
                if timeout is None:
                    result = await handling
                else:
                    result = await asyncio.wait_for(handling, timeout)
                if route.reply_adapter is not None:
                    result = route.reply_adapter.validate_python(result)
            except Exception as exc:  # noqa: BLE001  # logged by `_failed`
                if timings is not None:
                    timings.observe(route.operation, time.perf_counter() - began)
                if attempt is None and await self._retrying(route, address, tries, exc):
                    tries += 1
                    continue
                return await self._failed(
                    route,
                    address,
                    payload,
                    reply_to,
                    exc,
                    dead_letter_failures,
                    headers=headers,
                    attempt=attempt or tries,
                    redeliverable=redeliverable,
                )
            break
        if timings is not None:
            timings.observe(route.operation, time.perf_counter() - began)
        if route.reply_adapter is not None and send_reply:
            await self._reply(route, params, reply_to, result)
        stats.handled += 1
        # Asked here rather than inside `debug()`: one call less on every message.
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s handled a message on %s", route.operation, address)
        if result is None:
            return self._handled[route.operation]
        return DispatchResult("handled", route.operation, reply=result)

    async def _retrying(
        self, route: Route, address: str, tries: int, exc: Exception
    ) -> bool:
        """Whether to try a failed handler again; if so, after waiting its backoff."""
        retries, backoff = self._retries[route.operation]
        if tries > retries or self._stopping.is_set():
            return False
        wait = min(backoff * 2 ** (tries - 1), MAX_RETRY_BACKOFF) * random.uniform(
            0.5, 1.0
        )
        self.stats[route.operation].retried += 1
        if self._log_throttle.allow(route.operation):
            self.logger.warning(
                "handler of %s failed on %s (attempt %d of %d): %s: %s; "
                "trying again in %.2f s",
                route.operation,
                address,
                tries,
                retries + 1,
                type(exc).__name__,
                exc,
                wait,
            )
        await self._sleep_unless_stopped(wait)
        return True

    async def _failed(
        self,
        route: Route,
        address: str,
        payload: bytes,
        reply_to: str | None,
        exc: Exception,
        dead_letter: bool,
        *,
        headers: dict[str, str] | None,
        attempt: int,
        redeliverable: bool,
    ) -> DispatchResult:
        """The handler failed for good: log it, answer a request with an error reply,
        dead-letter the message (unless the broker will redeliver it)."""
        self.stats[route.operation].failed += 1
        if self.tracing is not None:
            self.tracing.failed(exc)
        if self._log_throttle.allow(route.operation):
            self.logger.error(
                "handler of %s failed on %s",
                route.operation,
                address,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        reason = f"handler raised {type(exc).__name__}: {exc}"
        settled = True
        if dead_letter:
            if reply_to is not None and route.reply_adapter is not None:
                await self._error_reply(route, reply_to, 500, reason)
            # The traceback above (or its place in the held-back count) is this
            # message's log line.
            settled = await self._dead_letter(
                route.operation,
                "failed",
                address,
                payload,
                reason,
                headers=headers,
                attempt=attempt,
                redeliverable=redeliverable,
                logged=True,
            )
        return DispatchResult("failed", route.operation, reason, settled=settled)

    async def _error_reply(
        self, route: Route, reply_to: str, status: int, reason: str
    ) -> None:
        """Tell the requester at once that its request was refused."""
        body, headers = error_reply(status, reason)
        try:
            await self._send(reply_to, body, route, headers)
        except Exception:
            self.logger.exception(
                "could not send the error reply of %s", route.operation
            )

    async def _dispatch_in_span(
        self,
        tracing: Tracing,
        table: RouteTable,
        address: str,
        payload: bytes,
        headers: dict[str, str] | None,
        reply_to: str | None,
        **options: Any,
    ) -> DispatchResult:
        """`_dispatch` in a consumer span, the current span while the handler runs."""
        with tracing.processing(table, address, payload, headers) as processing:
            result = await self._dispatch(
                table, address, payload, headers, reply_to, **options, in_span=True
            )
            tracing.processed(
                processing, result.operation, result.status, result.reason
            )
        return result

    async def _refuse(
        self,
        refused: tuple[Route, str] | None,
        address: str,
        payload: bytes,
        reply_to: str | None,
        headers: dict[str, str] | None,
        redeliverable: bool,
    ) -> DispatchResult:
        """A message no route took: invalid for the route that refused it first, else
        unrouted. An invalid request is answered with an error reply."""
        if refused is not None:
            route, reason = refused
            stats = self.stats[route.operation]
            stats.received += 1
            stats.invalid += 1
            if reply_to is not None and route.reply_adapter is not None:
                await self._error_reply(route, reply_to, 400, reason)
            settled = await self._dead_letter(
                route.operation,
                "invalid",
                address,
                payload,
                reason,
                headers=headers,
                redeliverable=redeliverable,
            )
            return DispatchResult("invalid", route.operation, reason, settled=settled)
        if self._log_throttle.allow("unrouted"):
            self.logger.warning(
                "no operation receives on %s %s; ignored", self.address_word, address
            )
        return DispatchResult("unrouted", reason=f"no operation receives on {address}")

    async def _reply(
        self,
        route: Route,
        params: pydantic.BaseModel,
        reply_to: str | None,
        reply: Any,
    ) -> None:
        address = reply_to
        if address is None and route.reply_address is not None:
            try:
                address = route.reply_address.build(params.model_dump(by_alias=True))
            except (ValueError, pydantic.ValidationError) as exc:
                self.logger.error(
                    "cannot address the reply of %s: %s", route.operation, exc
                )
                return
        if address is None:
            self.logger.warning(
                "the reply of %s has no address; not sent", route.operation
            )
            return
        await self._send(address, encode(reply), route)

    async def _dead_letter(
        self,
        operation: str,
        code: ReasonCode,
        address: str,
        payload: bytes,
        reason: str,
        *,
        headers: dict[str, str] | None = None,
        attempt: int = 1,
        redeliverable: bool = False,
        logged: bool = False,
    ) -> bool:
        """Log the rejection (unless `logged` already) and publish the original bytes,
        with why and where from as metadata, to the dead-letter address.

        When the broker does not take the dead letter, a message it would deliver again
        (`redeliverable`) is left unacknowledged: False tells the caller so. A dead
        letter larger than the broker takes, or one of a message that would not come
        again, is kept in the local spool instead. True: the original may be
        acknowledged.
        """
        if not logged and self._log_throttle.allow(operation):
            self.logger.error(
                "%s: message on %s rejected: %s", operation, address, reason
            )
        target = self._dead_letter_address()
        if not target:
            return True
        letter = DeadLetter(
            operation,
            code,
            reason,
            address,
            payload,
            attempt=attempt,
            headers=headers or {},
        )
        stats = self.stats[operation]
        try:
            await self._send_dead_letter(target, letter)
        except TooLarge as exc:
            # It will not fit next time either: redelivery would only repeat this.
            problem = f"is too large for the broker ({exc})"
        except Exception as exc:
            # Whatever the client library raises; the traceback only when debugging.
            self.logger.debug("publishing a dead letter failed", exc_info=True)
            if redeliverable:
                if self._log_throttle.allow(f"{operation} dead letters"):
                    self.logger.warning(
                        "%s: could not publish the dead letter of a message on %s "
                        "(%s); left unacknowledged for the broker to deliver again",
                        operation,
                        address,
                        str(exc) or type(exc).__name__,
                    )
                return False
            problem = f"could not be published ({str(exc) or type(exc).__name__})"
        else:
            stats.dead_lettered += 1
            return True
        throttled = not self._log_throttle.allow(f"{operation} dead letters")
        if await asyncio.to_thread(self.spool.put, letter):
            stats.spooled += 1
            if not throttled:
                self.logger.warning(
                    "%s: the dead letter of a message on %s %s; kept in the spool %s",
                    operation,
                    address,
                    problem,
                    self.spool.directory,
                )
            return True
        if not throttled:
            self.logger.error(
                "%s: the dead letter of a message on %s %s, and the spool %s is full "
                "(DEAD_LETTER_SPOOL_MAX_SIZE %d bytes): %s",
                operation,
                address,
                problem,
                self.spool.directory,
                self.spool.max_bytes,
                "left unacknowledged" if redeliverable else "the message is lost",
            )
        if redeliverable:
            return False
        stats.dead_letters_lost += 1
        return True

    # -- concurrency and shutdown ------------------------------------------------------

    def stop(self) -> None:
        """Stop taking messages; `run()` lets running handlers finish, then returns.

        Background tasks (`start_background`) are cancelled at once.
        """
        self._stopping.set()
        self.connected.clear()
        for task in self._background:
            task.cancel()

    # -- lifespan and background tasks -------------------------------------------------

    def start_background(
        self, work: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run `work` while the service runs: it is cancelled when the service stops,
        and awaited before the lifespan closes what it opened. An exception it raises
        is logged."""
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        if self._stopping.is_set():
            task.cancel()
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.logger.error(
                "background task %s failed",
                task.get_name(),
                exc_info=task.exception(),
            )

    @asynccontextmanager
    async def started(self) -> AsyncIterator[None]:
        """Enter the lifespan: `state` holds what it yielded until the block ends;
        then background tasks are cancelled and the lifespan closes what it opened.

        `run()` enters it by itself; tests that call `dispatch()` with the project's
        dependencies enter it around their calls.
        """
        async with contextlib.AsyncExitStack() as stack:
            if self.lifespan is not None:
                self.state = await stack.enter_async_context(self.lifespan(self))
            # Unwound first: background tasks end before their dependencies close.
            stack.push_async_callback(self._stop_background)
            self._running = True
            try:
                yield
            finally:
                self._running = False

    def accepting(self) -> bool:
        """Whether messages from outside the broker (HTTP) are taken now: between the
        lifespan's startup and a stop."""
        return self._running and not self._stopping.is_set()

    async def _stop_background(self) -> None:
        tasks = set(self._background)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    @asynccontextmanager
    async def _operating(self) -> AsyncIterator[None]:
        """What `run()` serves within: the lifespan, and the HTTP listener when
        HTTP_PORT is set (started after the lifespan, stopped before it closes)."""
        async with self.started():
            if self.settings.http_port is None:
                yield
                return
            from .http import HttpListener

            listener = HttpListener(self)
            await listener.start()
            try:
                yield
            finally:
                await listener.stop()

    def _catch_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _inbox(self, handle: Callable[[T], Awaitable[None]]) -> Inbox[T]:
        """A bounded inbox served by MAX_CONCURRENCY workers (the service's own, while
        it runs: `_incoming`)."""
        inbox = Inbox(
            self.settings.max_pending_messages, self.settings.max_concurrency, handle
        )
        self._incoming = inbox
        return inbox

    def _dropped(self, address: str) -> None:
        """A message the broker would not keep found the inbox full."""
        self.service_stats.dropped += 1
        if self._log_throttle.allow("dropped"):
            self.logger.warning(
                "%d messages already wait for a handler (MAX_PENDING_MESSAGES): "
                "dropped a message on %s %s (%d dropped so far)",
                self.settings.max_pending_messages,
                self.address_word,
                address,
                self.service_stats.dropped,
            )

    async def _close_inbox(self, inbox: Inbox[Any]) -> list[Any]:
        """Stop handling: let the handlers in progress finish within the grace period;
        what still waited is returned, not handled."""
        left, cancelled = await inbox.close(self.settings.shutdown_grace_period)
        if cancelled:
            self.logger.warning(
                "%d handlers did not finish within the grace period", cancelled
            )
        return left

    def _start_stats(self) -> asyncio.Task[None] | None:
        if not self.settings.stats_interval:
            return None
        return asyncio.create_task(self._log_stats())

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval)
            for operation, stats in self.stats.items():
                self.logger.info("stats %s %s", operation, json.dumps(asdict(stats)))
            self.logger.info("service stats %s", json.dumps(asdict(self.service_stats)))
