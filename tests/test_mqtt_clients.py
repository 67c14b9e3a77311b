"""The MQTT client adapters of the runtime against a real mosquitto: what the service
relies on of `mqtt.MqttClient`, whichever client library is behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Mosquitto
from runtime_fakes import Settings

from asyncgen.runtime.aiomqtt_client import AiomqttClient
from asyncgen.runtime.gmqtt_client import GmqttClient
from asyncgen.runtime.mqtt import (
    ConnectionLost,
    Delivery,
    MqttClient,
    MqttSettings,
    SessionTerms,
    client_for,
    session_terms,
)

pytestmark = pytest.mark.broker

#: Each adapter, by the name MQTT_CLIENT gives it.
CLIENTS: dict[str, Callable[[MqttSettings], MqttClient]] = {
    "aiomqtt": AiomqttClient,
    "gmqtt": GmqttClient,
}


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


async def _receive_all(client: MqttClient, count: int) -> list[Delivery]:
    return [await asyncio.wait_for(client.receive(), 10) for _ in range(count)]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("library", sorted(CLIENTS))
def test_unacknowledged_qos1_messages_come_back_after_a_reconnect_and_acked_ones_do_not(
    library: str, protocol: str, mosquitto: Mosquitto
) -> None:
    """The client acknowledges nothing by itself: only what `ack()` was called for is
    gone from the persistent session; the rest is redelivered, in order."""

    async def scenario() -> tuple[list[bytes], list[bytes], list[int]]:
        make = CLIENTS[library]
        receiver = make(settings_for(mosquitto, f"keep-{protocol}", mqtt_protocol=protocol))
        sender = make(settings_for(mosquitto, f"send-{protocol}", mqtt_protocol=protocol))
        await receiver.connect()
        await receiver.subscribe("acks/+", 1)
        await sender.connect()
        for index in range(6):
            await sender.publish(f"acks/{index}", str(index).encode(), qos=1)
        first = await _receive_all(receiver, 6)
        for delivery in first[:3]:
            receiver.ack(delivery.mid, delivery.qos)
        queued = receiver.queued()
        await asyncio.sleep(0.2)  # the acks reach the broker before the disconnect
        await receiver.disconnect()
        await receiver.connect()
        await receiver.subscribe("acks/+", 1)
        again = await _receive_all(receiver, 3)
        for delivery in again:
            receiver.ack(delivery.mid, delivery.qos)
        await asyncio.sleep(0.2)
        await receiver.disconnect()
        await sender.publish("acks/last", b"last", qos=1)
        await receiver.connect()
        await receiver.subscribe("acks/+", 1)
        last = await asyncio.wait_for(receiver.receive(), 10)
        receiver.ack(last.mid, last.qos)
        await receiver.disconnect()
        await sender.disconnect()
        return (
            [d.payload for d in first],
            [d.payload for d in again] + [last.payload],
            [queued, first[0].qos],
        )

    first, again, (queued, qos) = asyncio.run(scenario())
    assert first == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert again == [b"3", b"4", b"5", b"last"]
    assert queued == 0 and qos == 1


@pytest.mark.parametrize("library", sorted(CLIENTS))
def test_broker_loss_is_connection_lost_and_connect_works_again_after_a_restart(
    library: str, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()

    async def scenario() -> tuple[str, str, bytes]:
        client = CLIENTS[library](settings_for(broker, "lost"))
        await client.connect()
        await client.subscribe("loss/#", 0)
        receiving = asyncio.ensure_future(client.receive())
        await asyncio.sleep(0.2)
        broker.stop()
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(receiving, 10)
        await client.disconnect()
        with pytest.raises(ConnectionLost) as refused:
            await client.connect()
        broker.start()
        await client.connect()
        await client.subscribe("loss/#", 0)
        await client.publish("loss/back", b"back", qos=1)
        delivery = await asyncio.wait_for(client.receive(), 10)
        await client.disconnect()
        return type(refused.value).__name__, delivery.topic, delivery.payload

    try:
        assert asyncio.run(scenario()) == ("ConnectionLost", "loss/back", b"back")
    finally:
        broker.stop()


def test_gmqtt_refuses_websocket_at_start() -> None:
    with pytest.raises(SystemExit, match="MQTT_CLIENT=gmqtt cannot connect over WebSocket"):
        GmqttClient(dataclasses.replace(Settings(), mqtt_transport="websockets"))


def test_a_missing_client_library_is_one_line_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gmqtt", None)  # import gmqtt raises ImportError
    monkeypatch.delitem(sys.modules, "asyncgen.runtime.gmqtt_client", raising=False)
    with pytest.raises(SystemExit, match=r"MQTT_CLIENT=gmqtt needs the gmqtt package.*\[gmqtt\]"):
        client_for(dataclasses.replace(Settings(), mqtt_client="gmqtt"))


def test_session_terms_follow_the_settings_unless_a_session_is_asked_for() -> None:
    clean = Settings(mqtt_clean_session=True, max_pending_messages=0)
    assert session_terms(clean) == SessionTerms(True, None, 1)
    kept = Settings(mqtt_clean_session=False, mqtt_session_expiry=60)
    assert session_terms(kept) == SessionTerms(False, 60, 1000)
    # The dead-letter session: persistent whatever the settings, for as long as asked.
    assert session_terms(clean, 3600) == SessionTerms(False, 3600, 1)
    assert session_terms(Settings(max_pending_messages=10**6)).receive_maximum == 65535
