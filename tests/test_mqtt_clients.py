"""The MQTT client adapters of the runtime against a real mosquitto: what the service
relies on of `mqtt.MqttClient`, whichever client library is behind it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest
from conftest import Mosquitto
from runtime_fakes import Settings

from asyncgen.runtime.aiomqtt_client import AiomqttClient
from asyncgen.runtime.mqtt import MqttClient, MqttSettings

pytestmark = pytest.mark.broker

#: Each adapter, by the name MQTT_CLIENT gives it.
CLIENTS: dict[str, Callable[[MqttSettings], MqttClient]] = {"aiomqtt": AiomqttClient}


def settings_for(broker: Mosquitto, client_id: str, **changes: object) -> Settings:
    return dataclasses.replace(
        Settings(), mqtt_port=broker.port, mqtt_client_id=client_id, **changes
    )


@pytest.mark.parametrize("library", sorted(CLIENTS))
def test_headers_travel_as_user_properties_over_mqtt5_and_are_dropped_over_311(
    library: str, mosquitto: Mosquitto
) -> None:
    async def exchange(protocol: str) -> dict[str, str] | None:
        make = CLIENTS[library]
        receiver = make(settings_for(mosquitto, f"r{protocol}", mqtt_protocol=protocol))
        sender = make(settings_for(mosquitto, f"s{protocol}", mqtt_protocol=protocol))
        await receiver.connect()
        await sender.connect()
        try:
            await receiver.subscribe(f"h/{protocol}", 1)
            await sender.publish(f"h/{protocol}", b"x", qos=1, headers={"trace": "abc", "n": "1"})
            delivery = await asyncio.wait_for(receiver.receive(), 10)
            receiver.ack(delivery.mid, delivery.qos)
            assert delivery.payload == b"x"
            return delivery.headers
        finally:
            await sender.disconnect()
            await receiver.disconnect()

    assert asyncio.run(exchange("5")) == {"trace": "abc", "n": "1"}
    assert not asyncio.run(exchange("3.1.1"))
