"""The event loop a service runs on: asyncio's own, or uvloop (EVENT_LOOP).

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal

EventLoop = Literal["asyncio", "uvloop"]


def loop_factory(
    event_loop: EventLoop,
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the loop `event_loop` names; None for asyncio's default.

    A missing uvloop stops the service at start with one line saying what to do
    (`SystemExit`, no traceback).
    """
    if event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        raise SystemExit(
            "error: EVENT_LOOP=uvloop needs the uvloop package, which is not "
            "installed: install the project's [uvloop] extra (pip install "
            "'.[uvloop]'), or set EVENT_LOOP=asyncio"
        ) from None
    return uvloop.new_event_loop


def run(main: Callable[[], Coroutine[Any, Any, None]], event_loop: EventLoop) -> None:
    """Run `main()` to completion on a new loop of the kind `event_loop` names."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        runner.run(main())
