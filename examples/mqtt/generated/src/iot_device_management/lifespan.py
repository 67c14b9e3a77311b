"""Startup and shutdown of IoT Device Management: the dependencies its handlers share,
and the work that runs beside them.

`lifespan()` runs once when the service starts, before it connects: open what the
handlers need (a database pool, an HTTP client) and yield it in a `State`; handlers
reach it as `context.state`. Work that runs as long as the service does (periodic
publishing, say) is started with `service.start_background(...)`: it is cancelled when
the service stops, before the code after `yield` closes what was opened. Tests that
call `service.dispatch()` run the lifespan with `async with service.started(): ...`.

This module is yours: asyncgen wrote it once and will not touch it again. Import the
service only for type checking, as below: the generated modules import this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iot_device_management._generated.service import Service


@dataclass
class State:
    """What handlers reach as `context.state`: add your dependencies as fields."""

    # db: asyncpg.Pool


@asynccontextmanager
async def lifespan(service: Service) -> AsyncIterator[State]:
    """Build the service's dependencies, yield them while it runs, then close them."""
    # db = await asyncpg.create_pool(dsn=...)
    # service.start_background(send_heartbeat_every(service, 30.0))
    yield State()
    # await db.close()


async def send_heartbeat_every(service: Service, seconds: float) -> None:
    """Periodic work: `sendHeartbeat` every `seconds`, while the service runs
    (start it in `lifespan()` above)."""
    while True:
        # await service.publishers.send_heartbeat(models.SystemHeartbeat(...))
        await asyncio.sleep(seconds)
