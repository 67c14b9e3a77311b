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
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import pydantic

from .deadletters import DeadLetter, ReasonCode, TooLarge
from .payloads import encode
from .routing import Route, RouteTable, describe, rejection
from .spool import Spool

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
    def dead_letter_spool_dir(self) -> Path: ...
    @property
    def dead_letter_spool_max_size(self) -> int: ...


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
    dead_lettered: int = 0
    #: Dead letters the broker would not take, kept in the local spool instead.
    spooled: int = 0
    #: Dead letters neither published nor spooled (the spool was full) of messages the
    #: broker would not deliver again.
    dead_letters_lost: int = 0


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
    settings: S
    publishers: PublishersT

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
        self.spool = Spool(
            Path(settings.dead_letter_spool_dir), settings.dead_letter_spool_max_size
        )

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
        """Publish a reply (`route` is the operation answering)."""
        raise NotImplementedError

    async def _send_dead_letter(self, target: str, letter: DeadLetter) -> None:
        """Publish `letter` under the dead-letter address `target`, confirmed by the
        broker where the protocol allows; `TooLarge` when it exceeds the broker's
        limit, any other exception when the broker cannot be reached."""
        raise NotImplementedError

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
        redeliverable: bool = False,
    ) -> DispatchResult:
        """Route, validate and handle one message among the routes of `table`.

        The routes whose address matches are tried most specific first, and each of
        their messages in turn: the first that the payload is takes it. A message that
        none takes is invalid, in the name of the most specific route.

        `redeliverable` says that the broker delivers the message again unless it is
        acknowledged (QoS 1, JetStream): see `_dead_letter`.
        """
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
            return await self._refuse(refused, address, payload, headers, redeliverable)
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
            if self._log_throttle.allow(route.operation):
                self.logger.exception(
                    "handler of %s failed on %s", route.operation, address
                )
            reason = f"handler raised {type(exc).__name__}: {exc}"
            settled = True
            if dead_letter_failures:
                # The traceback above (or its place in the held-back count) is this
                # message's log line.
                settled = await self._dead_letter(
                    route.operation,
                    "failed",
                    address,
                    payload,
                    reason,
                    headers=headers,
                    redeliverable=redeliverable,
                    logged=True,
                )
            return DispatchResult("failed", route.operation, reason, settled=settled)
        if route.reply_adapter is not None:
            await self._reply(route, params, reply_to, result)
        stats.handled += 1
        # Asked here rather than inside `debug()`: one call less on every message.
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s handled a message on %s", route.operation, address)
        if result is None:
            return self._handled[route.operation]
        return DispatchResult("handled", route.operation, reply=result)

    async def _refuse(
        self,
        refused: tuple[Route, str] | None,
        address: str,
        payload: bytes,
        headers: dict[str, str] | None,
        redeliverable: bool,
    ) -> DispatchResult:
        """A message no route took: invalid for the route that refused it first, else
        unrouted."""
        if refused is not None:
            route, reason = refused
            stats = self.stats[route.operation]
            stats.received += 1
            stats.invalid += 1
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
