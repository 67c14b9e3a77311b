"""Incoming flow control: a bounded inbox of received messages, served by workers.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.

The connection's reader only takes messages and puts them here, so it never waits for
a handler: a handler that makes a request of its own service gets its reply, because
the request is read and handled while it waits (see `Inbox.lend`). The inbox is bounded
for the messages the broker would not keep (MQTT QoS 0, NATS core): when full, they are
dropped and counted. The others (MQTT QoS 1 and 2) are bounded by the broker itself,
which sends no more than its in-flight window before it sees their acks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: The inbox whose worker runs the current task's handler, if any.
_serving: ContextVar[Inbox[Any] | None] = ContextVar("asyncgen_inbox", default=None)


class Inbox(Generic[T]):
    """Received messages waiting for one of `workers` workers, in arrival order.

    With one worker, messages are handled one at a time in the order they arrived.
    """

    def __init__(
        self, limit: int, workers: int, handle: Callable[[T], Awaitable[None]]
    ) -> None:
        self.limit = limit
        self.workers = workers
        self._handle = handle
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._excess = 0  # workers to retire, after a lent worker came back
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def start(self) -> None:
        self._closed = False
        for _ in range(self.workers):
            self._spawn()

    def offer(self, item: T, *, droppable: bool) -> bool:
        """Queue `item`; False when it is droppable and the inbox is full, or closed."""
        if self._closed or (droppable and len(self._items) >= self.limit):
            return False
        self._items.append(item)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return True

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[None]:
        """While the current handler waits (for a reply, say), another worker takes its
        place, so that what it waits for can be handled meanwhile."""
        if _serving.get() is not self or self._closed:
            yield
            return
        self._spawn()
        try:
            yield
        finally:
            self._excess += 1

    def _spawn(self) -> None:
        task = asyncio.create_task(self._work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self) -> None:
        _serving.set(self)
        items = self._items
        loop = asyncio.get_running_loop()
        while not self._closed:
            if self._excess:
                self._excess -= 1
                return
            if not items:
                waiter = loop.create_future()
                self._waiters.append(waiter)
                await waiter
                continue
            await self._handle(items.popleft())

    def clear(self) -> None:
        """Drop the messages waiting (their connection is gone)."""
        self._items.clear()

    async def close(self, grace: float) -> tuple[list[T], int]:
        """Take no more; let the handlers in progress finish within `grace` seconds,
        then cancel them. Returns the messages that were waiting, not handled, and how
        many handlers were cancelled."""
        self._closed = True
        left = list(self._items)
        self._items.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        if not self._tasks:
            return left, 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return left, len(pending)
