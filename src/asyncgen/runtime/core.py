"""The protocol-neutral service: routing, validation, handlers, replies, dead letters,
counters, concurrency and shutdown. Protocol adapters (`mqtt`, `nats`) subclass
`ServiceCore` with what differs: connecting, subscribing, acknowledging, publishing.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

import pydantic

from .addresses import Address
from .payloads import encode
from .routing import Route, RouteTable, describe, rejection

if TYPE_CHECKING:  # imported when tracing starts: only with opentelemetry-api
    from opentelemetry.trace import TracerProvider
    from opentelemetry.util.types import AttributeValue

    from .tracing import Tracing

Status = Literal["handled", "invalid", "failed", "unrouted"]


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
    def tracing(self) -> str:
        """`auto`: trace when opentelemetry-api is installed; `off`: never."""
        ...


S = TypeVar("S", bound=CoreSettings)
PublishersT = TypeVar("PublishersT")


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


@dataclass
class OperationStats:
    """Counters of one receive operation."""

    received: int = 0
    handled: int = 0
    invalid: int = 0
    failed: int = 0
    dead_lettered: int = 0


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


def dead_letter_envelope(
    address_word: str,
    address: str,
    operation: str,
    payload: bytes,
    reason: str,
    now: datetime | None = None,
) -> bytes:
    """The original bytes with why and where they were refused, as a JSON object.

    The payload is kept as UTF-8 text when it is text, else in base64.
    """
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    envelope = {
        address_word: address,
        "operation": operation,
        "reason": reason,
        "payload": text,
        "payload_encoding": encoding,
        "time": (now or datetime.now(UTC)).isoformat(),
    }
    return json.dumps(envelope).encode()


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
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrency)
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
    ) -> Any:
        """The `MessageContext` a handler gets.

        Each message gets a context of its own, and the service reads nothing back from
        it. Contexts are not frozen because a frozen dataclass sets each field through
        `object.__setattr__`, which made it the dearest step of the service's own work
        on a message.
        """
        raise NotImplementedError

    def _dead_letter_address(self) -> str | None:
        raise NotImplementedError

    async def _send(self, address: str, payload: bytes, route: Route | None) -> None:
        """Publish a reply (`route` is the operation answering) or a dead letter."""
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
        in_span: bool = False,
    ) -> DispatchResult:
        """Route, validate and handle one message among the routes of `table`.

        The routes whose address matches are tried most specific first, and each of
        their messages in turn: the first that the payload is takes it. A message that
        none takes is invalid, in the name of the most specific route. When tracing,
        all of it runs in a consumer span (`in_span` once it does).
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
                qos,
                retain,
                dead_letter_failures,
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
            return await self._refuse(refused, address, payload)
        # Handled here rather than in a method of its own: at a few microseconds per
        # message, one coroutine less counts.
        stats = self.stats[route.operation]
        stats.received += 1
        context = self._context(route.operation, address, payload, headers, qos, retain)
        timeout = self.settings.handler_timeout
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
        except Exception as exc:
            stats.failed += 1
            if self.tracing is not None:
                self.tracing.failed(exc)
            if self._log_throttle.allow(route.operation):
                self.logger.exception(
                    "handler of %s failed on %s", route.operation, address
                )
            reason = f"handler raised {type(exc).__name__}: {exc}"
            if dead_letter_failures:
                # The traceback above (or its place in the held-back count) is this
                # message's log line.
                await self._dead_letter(
                    route.operation, address, payload, reason, logged=True
                )
            return DispatchResult("failed", route.operation, reason)
        if route.reply_adapter is not None:
            await self._reply(route, params, reply_to, result)
        stats.handled += 1
        # Asked here rather than inside `debug()`: one call less on every message.
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s handled a message on %s", route.operation, address)
        if result is None:
            return self._handled[route.operation]
        return DispatchResult("handled", route.operation, reply=result)

    async def _dispatch_in_span(
        self,
        tracing: Tracing,
        table: RouteTable,
        address: str,
        payload: bytes,
        headers: dict[str, str] | None,
        reply_to: str | None,
        qos: int,
        retain: bool,
        dead_letter_failures: bool,
    ) -> DispatchResult:
        """`_dispatch` in a consumer span, the current span while the handler runs."""
        with tracing.processing(table, address, payload, headers) as processing:
            result = await self._dispatch(
                table,
                address,
                payload,
                headers,
                reply_to,
                qos=qos,
                retain=retain,
                dead_letter_failures=dead_letter_failures,
                in_span=True,
            )
            tracing.processed(
                processing, result.operation, result.status, result.reason
            )
        return result

    async def _refuse(
        self, refused: tuple[Route, str] | None, address: str, payload: bytes
    ) -> DispatchResult:
        """A message no route took: invalid for the route that refused it first, else
        unrouted."""
        if refused is not None:
            route, reason = refused
            stats = self.stats[route.operation]
            stats.received += 1
            stats.invalid += 1
            await self._dead_letter(route.operation, address, payload, reason)
            return DispatchResult("invalid", route.operation, reason)
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
        address: str,
        payload: bytes,
        reason: str,
        *,
        logged: bool = False,
    ) -> None:
        """Log the rejection (unless `logged` already) and publish the original bytes in
        a JSON envelope."""
        if not logged and self._log_throttle.allow(operation):
            self.logger.error(
                "%s: message on %s rejected: %s", operation, address, reason
            )
        target = self._dead_letter_address()
        if not target:
            return
        body = dead_letter_envelope(
            self.address_word, address, operation, payload, reason
        )
        try:
            await self._send(target, body, None)
        except Exception:
            self.logger.exception(
                "could not publish to the dead-letter %s %s", self.address_word, target
            )
            return
        self.stats[operation].dead_lettered += 1

    # -- concurrency and shutdown ------------------------------------------------------

    def stop(self) -> None:
        """Stop taking messages; `run()` lets running handlers finish, then returns."""
        self._stopping.set()

    def _catch_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _start_task(self, handling: Coroutine[Any, Any, None]) -> None:
        """Run a handling coroutine in a task of its own; a slot is already held."""
        task = asyncio.create_task(handling)
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def _drain(self) -> None:
        """Wait for in-flight handlers, up to the shutdown grace period."""
        if not self._inflight:
            return
        _, pending = await asyncio.wait(
            set(self._inflight), timeout=self.settings.shutdown_grace_period
        )
        for task in pending:
            task.cancel()
        if pending:
            self.logger.warning(
                "%d handlers did not finish within the grace period", len(pending)
            )

    def _start_stats(self) -> asyncio.Task[None] | None:
        if not self.settings.stats_interval:
            return None
        return asyncio.create_task(self._log_stats())

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval)
            for operation, stats in self.stats.items():
                self.logger.info("stats %s %s", operation, json.dumps(asdict(stats)))
