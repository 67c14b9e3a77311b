"""The raw gmqtt loop the generated service on gmqtt is compared with: subscribe,
validate with `TypeAdapter(TelemetryPayload).validate_json` in gmqtt's `on_message`, call
the same trivial handler. QoS 1 messages are acknowledged by gmqtt on receipt (its
default), so this is the fastest the library goes, without the generated service's
guarantee. Settings from the same environment variables as _raw_mqtt.py; EVENT_LOOP=uvloop
runs it on uvloop."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import gmqtt
from _sink import SINK
from iot_device_management._generated.models import TelemetryPayload
from pydantic import TypeAdapter


async def main() -> None:
    validate = TypeAdapter(TelemetryPayload).validate_json
    record = SINK.record
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    def on_message(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        validate(payload)
        record(topic)
        return 0

    client = gmqtt.Client(os.environ["MQTT_CLIENT_ID"])
    client.on_message = on_message
    await client.connect(
        os.environ["MQTT_HOST"], int(os.environ["MQTT_PORT"]), version=gmqtt.constants.MQTTv311
    )
    client.subscribe("devices/+/telemetry", qos=1)
    await stop.wait()
    await client.disconnect()


if __name__ == "__main__":
    if os.environ.get("EVENT_LOOP") == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
