"""The raw nats-py subscribers the generated NATS service is compared with.

`core`: a queue subscription on `sensors.temperature.*` whose callback validates with
`TypeAdapter(TemperatureReading).validate_json` and awaits a trivial handler.
`jetstream`: a pull consumer (durable `device-registry` on stream DEVICES) fetching
batches of BENCH_BATCH, validating with `TypeAdapter(DeviceAnnouncement)`, handling and
acking each message. Same models (from the generated project) and sink (bench/_sink.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import nats
import nats.errors
from _sink import SINK
from iot_device_management_nats._generated.models import DeviceAnnouncement, TemperatureReading
from nats.aio.client import Client
from pydantic import TypeAdapter


async def handle(message: Any, subject: str) -> None:
    SINK.record(subject)


async def core(nc: Client, stop: asyncio.Event) -> None:
    validate = TypeAdapter(TemperatureReading).validate_json

    async def on_message(msg: Any) -> None:
        payload = validate(msg.data)
        await handle(payload, msg.subject)

    await nc.subscribe("sensors.temperature.*", queue="telemetry-processors", cb=on_message)
    await stop.wait()


async def jetstream(nc: Client, stop: asyncio.Event) -> None:
    validate = TypeAdapter(DeviceAnnouncement).validate_json
    batch = int(os.environ.get("BENCH_BATCH", "10"))
    js = nc.jetstream()
    pull = await js.pull_subscribe("devices.announce", durable="device-registry", stream="DEVICES")
    while not stop.is_set():
        try:
            messages = await pull.fetch(batch, timeout=1.0)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in messages:
            payload = validate(msg.data)
            await handle(payload, msg.subject)
            await msg.ack()


async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    nc = await nats.connect(os.environ["NATS_URL"], name="bench-raw")
    try:
        await (core if sys.argv[1] == "core" else jetstream)(nc, stop)
    finally:
        await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
