"""The aiomqtt adapter of `mqtt.MqttClient`.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY, MQTT_ERR_NO_CONN
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .mqtt import ConnectionLost, Delivery, MqttSettings, session_terms, tls_context


class AiomqttClient:
    """An aiomqtt client, created once and reconnected by `connect()`."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str | None = None,
        session_expiry: int | None = None,
    ) -> None:
        """`client_id` replaces MQTT_CLIENT_ID; `session_expiry` asks for a persistent
        session kept that long (MQTT 5), whatever the settings say."""
        version5 = self._version5 = settings.mqtt_protocol == "5"
        terms = session_terms(settings, session_expiry)
        password = (
            settings.mqtt_password.get_secret_value()
            if settings.mqtt_password
            else None
        )
        properties: Properties | None = None
        if version5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.ReceiveMaximum = terms.receive_maximum
            if terms.expiry is not None:
                properties.SessionExpiryInterval = terms.expiry
        self._client = aiomqtt.Client(
            hostname=settings.mqtt_host,
            port=settings.mqtt_port,
            username=settings.mqtt_username,
            password=password,
            identifier=client_id or settings.mqtt_client_id,
            protocol=(
                aiomqtt.ProtocolVersion.V5 if version5 else aiomqtt.ProtocolVersion.V311
            ),
            clean_session=None if version5 else terms.clean,
            # MQTT 5 keeps a session only when asked to, for as long as it is told.
            clean_start=(terms.clean if version5 else MQTT_CLEAN_START_FIRST_ONLY),
            properties=properties,
            keepalive=settings.mqtt_keepalive,
            transport=settings.mqtt_transport,
            websocket_path=(
                settings.mqtt_ws_path
                if settings.mqtt_transport == "websockets"
                else None
            ),
            tls_context=tls_context(settings),
            # Small packets (acks, dead letters) go out at once instead of waiting on
            # Nagle.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # paho acknowledges a QoS 1 message as soon as aiomqtt has queued it, before any
        # handler ran. With manual acks the service acknowledges it only after its
        # handler finished or it was dead-lettered, so a crash means redelivery, not
        # loss. aiomqtt 2.5 does not expose the switch; its paho client does, and it
        # sends the acks.
        self._paho = self._client._client
        self._paho.manual_ack_set(True)
        self._messages = self._client.messages
        self._queue = self._client._queue
        self._aiomqtt_on_message = self._paho.on_message
        #: The largest packet the broker takes, when its MQTT 5 CONNACK says.
        self.max_packet_size: int | None = None
        # aiomqtt keeps the CONNACK's properties to itself: read them on the way.
        self._aiomqtt_on_connect = self._paho.on_connect
        self._paho.on_connect = self._on_connect

    def _on_connect(self, *arguments: Any) -> None:
        properties = arguments[4] if len(arguments) > 4 else None
        announced = getattr(properties, "MaximumPacketSize", None)
        self.max_packet_size = announced if isinstance(announced, int) else None
        if self._aiomqtt_on_connect is not None:
            self._aiomqtt_on_connect(*arguments)

    async def connect(self) -> None:
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise ConnectionLost(str(exc)) from exc

    async def disconnect(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def subscribe(self, topic_filter: str, qos: int) -> None:
        try:
            await self._client.subscribe(topic_filter, qos=qos)
        except aiomqtt.MqttError as exc:
            raise ConnectionLost(str(exc)) from exc

    async def publish(
        self,
        topic: str,
        payload: bytes,
        /,
        *,
        qos: int = 0,
        retain: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        properties: Properties | None = None
        if headers and self._version5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = list(headers.items())
        try:
            await self._client.publish(
                topic, payload, qos=qos, retain=retain, properties=properties
            )
        except aiomqtt.MqttCodeError as exc:
            if exc.rc == MQTT_ERR_NO_CONN:
                raise ConnectionLost(str(exc)) from exc
            raise

    async def receive(self) -> Delivery:
        if self._queue.empty():
            try:
                message = await anext(self._messages)
            except aiomqtt.MqttError as exc:
                raise ConnectionLost(str(exc)) from exc
        else:
            # Taken straight from aiomqtt's queue: its iterator costs a task and a
            # wait per message, slower than paho fills the queue under a flood, and
            # the queue (unbounded) would grow while the service's own inbox drops.
            message = self._queue.get_nowait()
        return _from_aiomqtt(message)

    def queued(self) -> int:
        return len(self._messages)

    def listen(self, received: Callable[[Delivery], None] | None) -> None:
        if received is None:
            self._paho.on_message = self._aiomqtt_on_message
            return
        while not self._queue.empty():
            received(_from_aiomqtt(self._queue.get_nowait()))

        # paho's messages go straight to `received`, past aiomqtt's queue and its
        # iterator (a task and a wait per message).
        def on_message(client: object, userdata: object, message: Any) -> None:
            received(
                _delivery(
                    message.topic,
                    message.payload,
                    message.qos,
                    message.retain,
                    message.mid,
                    message.properties,
                )
            )

        self._paho.on_message = on_message

    async def lost(self) -> None:
        disconnected = self._client._disconnected
        # Shielded: aiomqtt's own future must outlive this wait when it is cancelled.
        with contextlib.suppress(Exception):
            await asyncio.shield(disconnected)
        cause = disconnected.exception() if disconnected.done() else None
        raise ConnectionLost(str(cause) if cause else "disconnected")

    def ack(self, mid: int, qos: int) -> None:
        self._paho.ack(mid, qos)


def _from_aiomqtt(message: aiomqtt.Message) -> Delivery:
    return _delivery(
        message.topic.value,
        message.payload,
        message.qos,
        message.retain,
        message.mid,
        message.properties,
    )


def _delivery(
    topic: str,
    payload: object,
    qos: int,
    retain: bool,
    mid: int,
    properties: Any,
) -> Delivery:
    if not isinstance(payload, bytes):
        payload = b"" if payload is None else str(payload).encode()
    headers: dict[str, str] | None = None
    response_topic: str | None = None
    if properties is not None:
        headers = {
            str(key): str(value)
            for key, value in getattr(properties, "UserProperty", [])
        }
        response_topic = getattr(properties, "ResponseTopic", None)
    return Delivery(topic, payload, qos, retain, mid, headers, response_topic)
