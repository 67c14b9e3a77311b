"""The outgoing buffer: publishes made while the service is not connected wait here.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

Publish = Callable[[], Awaitable[None]]


class Disconnected(Exception):
    """A transport's publish found no connection to publish through."""


class PublishBufferFull(Exception):
    """The service is not connected and its outgoing buffer is full."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"not connected, and the outgoing buffer already holds {size} messages "
            "(OUTGOING_BUFFER_SIZE)"
        )
        self.size = size


class PublishTimeout(Exception):
    """A buffered publish could not go out in time: the service stayed disconnected."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"not connected for {timeout:g} s; the message was not published "
            "(OUTGOING_BUFFER_TIMEOUT)"
        )
        self.timeout = timeout


class _Entry:
    __slots__ = ("done", "publish", "sending")

    def __init__(self, publish: Publish, done: asyncio.Future[None]) -> None:
        self.publish = publish
        self.done = done
        self.sending = False


class Outbox:
    """Publishes go straight out while the link is up; otherwise they wait, in order,
    in a buffer of at most `size` messages, and go out first thing once it is up again.

    A publish returns once its message went out; one that waited `timeout` seconds
    raises `PublishTimeout`, and one that finds the buffer full raises
    `PublishBufferFull` at once. The link starts up, so that a service that never
    connects (`dispatch()` in tests) publishes straight to its transport; `run()` marks
    it down until the first connection.
    """

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._up = asyncio.Event()
        self._up.set()
        self._entries: deque[_Entry] = deque()
        self._flusher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def up(self) -> None:
        self._up.set()

    def down(self) -> None:
        self._up.clear()

    async def wait_up(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the link; whether it is up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout)
        return self._up.is_set()

    async def send(self, publish: Publish) -> None:
        """Run `publish` now, or once the link is up again, after those before it."""
        if self._up.is_set() and not self._entries:
            try:
                await publish()
                return
            except Disconnected:
                self._up.clear()
        if len(self._entries) >= self.size:
            raise PublishBufferFull(self.size)
        entry = _Entry(publish, asyncio.get_running_loop().create_future())
        self._entries.append(entry)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        try:
            await asyncio.wait_for(asyncio.shield(entry.done), self.timeout)
        except TimeoutError:
            if entry.sending:
                await entry.done
                return
            self._entries.remove(entry)
            raise PublishTimeout(self.timeout) from None

    async def _flush(self) -> None:
        entries = self._entries
        while entries:
            await self._up.wait()
            if not entries:
                break
            entry = entries[0]
            entry.sending = True
            try:
                await entry.publish()
            except Disconnected:
                entry.sending = False
                self._up.clear()
                continue
            except Exception as exc:  # noqa: BLE001  # raised by the publish waiting
                entries.popleft()
                if not entry.done.done():
                    entry.done.set_exception(exc)
                continue
            entries.popleft()
            if not entry.done.done():
                entry.done.set_result(None)

    def abandon(self) -> int:
        """Drop what still waits (the service stops); how many messages that was."""
        count = len(self._entries)
        for entry in self._entries:
            if not entry.done.done():
                entry.done.set_exception(
                    Disconnected("the service stopped before it could publish")
                )
        self._entries.clear()
        if self._flusher is not None:
            self._flusher.cancel()
        return count
