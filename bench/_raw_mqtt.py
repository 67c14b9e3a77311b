"""The raw aiomqtt loop the generated MQTT service is compared with: subscribe, validate
with `TypeAdapter(TelemetryPayload).validate_json`, call a trivial handler. Same model
(imported from the generated project), same sink, same broker; settings from the same
environment variables (MQTT_HOST, MQTT_PORT, MQTT_CLIENT_ID).

With BENCH_MANUAL_ACK=1 it acknowledges a QoS 1 message only after its handler returned,
as the generated service does (paho's manual acks), instead of on receipt."""

from __future__ import annotations

import asyncio
import os
import signal

import aiomqtt
from _sink import SINK
from iot_device_management._generated.models import TelemetryPayload
from pydantic import TypeAdapter


async def handle(message: TelemetryPayload, topic: str) -> None:
    SINK.record(topic)


async def main() -> None:
    validate = TypeAdapter(TelemetryPayload).validate_json
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    manual_ack = os.environ.get("BENCH_MANUAL_ACK") == "1"
    client = aiomqtt.Client(
        os.environ["MQTT_HOST"],
        int(os.environ["MQTT_PORT"]),
        identifier=os.environ["MQTT_CLIENT_ID"],
    )
    if manual_ack:
        client._client.manual_ack_set(True)
    async with client:
        await client.subscribe("devices/+/telemetry", qos=1)

        async def consume() -> None:
            async for message in client.messages:
                payload = validate(message.payload)
                await handle(payload, message.topic.value)

        async def consume_ack_after() -> None:
            async for message in client.messages:
                payload = validate(message.payload)
                await handle(payload, message.topic.value)
                if message.qos > 0:
                    client._client.ack(message.mid, message.qos)

        consumer = asyncio.create_task(consume_ack_after() if manual_ack else consume())
        await stop.wait()
        consumer.cancel()


if __name__ == "__main__":
    asyncio.run(main())
