"""The gmqtt adapter of `mqtt.MqttClient` (MQTT_CLIENT=gmqtt).

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.

gmqtt reads the socket on the event loop itself, with no thread in between, which makes
it several times faster than aiomqtt's paho loop. The adapter keeps the service's
guarantees on it:

- Received PUBLISH packets are parsed here and queued, nothing else: no task per
  message, no acknowledgement. The service acknowledges each QoS 1 or 2 message with
  `ack()` after its handler finished (PUBACK, or PUBREC for QoS 2, whose PUBREL gmqtt
  answers itself).
- gmqtt's own reconnects are switched off: a lost connection reaches the service as
  `ConnectionLost`, and the service reconnects with its backoff and subscribes again.
- A QoS 1 or 2 publish returns once the broker acknowledged it, as on aiomqtt.

This relies on gmqtt 0.8's package handler and storage (pinned `<0.9` by the project's
`gmqtt` extra); the adapter tests in asyncgen check each of these points on a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import gmqtt  # type: ignore[import-untyped, import-not-found, unused-ignore]
from gmqtt.mqtt.constants import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    MQTTCommands,
    MQTTv50,
    MQTTv311,
)
from gmqtt.storage import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    PersistentStorage,
)

from .mqtt import ConnectionLost, Delivery, MqttSettings, session_terms, tls_context

#: Seconds to wait for a CONNACK, a SUBACK or the PUBACK of a publish (aiomqtt's
#: default timeout).
TIMEOUT = 10.0

#: The first byte of a PUBACK (QoS 1) and of a PUBREC (QoS 2), by QoS.
_ACK_COMMANDS = {1: int(MQTTCommands.PUBACK), 2: int(MQTTCommands.PUBREC)}


class _Client(gmqtt.Client):  # type: ignore[misc, unused-ignore]
    """A gmqtt client that never reconnects by itself."""

    async def reconnect(self, delay: bool = False) -> None:
        """Not here: the service reconnects, with its backoff, and subscribes again."""


class _Outbox(PersistentStorage):  # type: ignore[misc, unused-ignore]
    """gmqtt's store of unacknowledged outgoing QoS 1 and 2 messages, which also tells
    a publish when the broker acknowledged its message."""

    def __init__(self) -> None:
        super().__init__()
        #: The packet id of the message stored last (a publish reads its own).
        self.last_mid = 0
        self.waiters: dict[int, asyncio.Future[None]] = {}

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.last_mid = mid

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        waiter = self.waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, reason: str) -> None:
        """The connection is gone: each waiting publish raises `ConnectionLost`.

        gmqtt keeps the messages and sends them again when the session resumes.
        """
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionLost(reason))


class GmqttClient:
    """A gmqtt client, created once and reconnected by `connect()`."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str | None = None,
        session_expiry: int | None = None,
    ) -> None:
        """`client_id` replaces MQTT_CLIENT_ID; `session_expiry` asks for a persistent
        session kept that long (MQTT 5), whatever the settings say."""
        if settings.mqtt_transport != "tcp":
            raise SystemExit(
                "error: MQTT_CLIENT=gmqtt cannot connect over WebSocket "
                f"(MQTT_TRANSPORT={settings.mqtt_transport}): set MQTT_CLIENT=aiomqtt"
            )
        self._settings = settings
        version5 = self._version5 = settings.mqtt_protocol == "5"
        terms = session_terms(settings, session_expiry)
        properties: dict[str, Any] = {}
        if version5:
            properties["receive_maximum"] = terms.receive_maximum
            if terms.expiry is not None:
                properties["session_expiry_interval"] = terms.expiry
        library_logger = logging.getLogger("gmqtt")
        if library_logger.level == logging.NOTSET:
            # gmqtt logs every lost connection with a traceback; the service logs
            # what it does about it.
            library_logger.setLevel(logging.ERROR)
        self._outbox = _Outbox()
        self._client = _Client(
            client_id or settings.mqtt_client_id,
            # MQTT 5: clean start. Either way False resumes the stored session.
            clean_session=terms.clean,
            optimistic_acknowledgement=False,
            persistent_storage=self._outbox,
            **properties,
        )
        if settings.mqtt_username is not None:
            password = settings.mqtt_password
            self._client.set_auth_credentials(
                settings.mqtt_username,
                password.get_secret_value() if password is not None else None,
            )
        self._ssl = tls_context(settings) or False
        handler = self._client._package_handler
        self._parse_properties = handler._parse_properties
        # PUBLISH packets come here instead of gmqtt's handler, which would run a task
        # per message to acknowledge it: they are queued, and acknowledged by `ack()`.
        # The other packets go on to gmqtt's handler.
        self._handle_other = handler._handle_packet
        handler._handle_packet = self._on_packet
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._queue: deque[Delivery] = deque()
        self._received: Callable[[Delivery], None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._subacks: dict[int, asyncio.Future[None]] = {}
        #: Why the connection is gone; None while it is up.
        self._lost: str | None = "not connected"
        #: Acknowledgements not yet written: the acks of one `Acks.flush()` go out in
        #: one write, at the end of the event loop's current turn.
        self._acks = bytearray()

    # -- gmqtt's callbacks -------------------------------------------------------------

    def _on_packet(self, cmd: int, packet: bytes) -> None:
        if cmd & 0xF0 == 0x30:
            self._on_publish(cmd, packet)
        else:
            self._handle_other(cmd, packet)

    def _on_publish(self, cmd: int, raw: bytes) -> None:
        # The topic is always spelled out: the client allows no topic aliases.
        qos = (cmd & 0x06) >> 1
        end = 2 + int.from_bytes(raw[:2], "big")
        topic = raw[2:end].decode("utf-8", "replace")
        mid = 0
        if qos:
            mid = int.from_bytes(raw[end : end + 2], "big")
            end += 2
        headers: dict[str, str] | None = None
        response_topic: str | None = None
        if self._version5:
            properties, payload = self._parse_properties(raw[end:])
            if properties is None:
                return  # malformed: never acknowledged, so redelivered
            if properties:
                pairs = properties.get("user_property")
                if pairs:
                    headers = dict(pairs)
                response_topics = properties.get("response_topic")
                if response_topics:
                    response_topic = response_topics[0]
        else:
            payload = raw[end:]
        delivery = Delivery(
            topic, payload, qos, bool(cmd & 0x01), mid, headers, response_topic
        )
        if self._received is not None:
            self._received(delivery)
            return
        self._queue.append(delivery)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_disconnect(
        self, client: object, packet: object, exc: object = None
    ) -> None:
        self._fail("the connection to the broker was lost")

    def _on_subscribe(
        self, client: object, mid: int, qos: object, properties: object
    ) -> None:
        waiter = self._subacks.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        subacks, self._subacks = self._subacks, {}
        for suback in subacks.values():
            if not suback.done():
                suback.set_exception(ConnectionLost(reason))
        self._outbox.fail(reason)

    # -- MqttClient --------------------------------------------------------------------

    async def connect(self) -> None:
        settings = self._settings
        # What the last connection left is redelivered by the broker, or was QoS 0.
        self._queue.clear()
        self._acks.clear()
        self._client.subscriptions = []
        self._lost = None
        try:
            await asyncio.wait_for(
                self._client.connect(
                    settings.mqtt_host,
                    settings.mqtt_port,
                    ssl=self._ssl,
                    keepalive=settings.mqtt_keepalive,
                    version=MQTTv50 if self._version5 else MQTTv311,
                ),
                TIMEOUT,
            )
        except (OSError, TimeoutError, gmqtt.MQTTConnectError) as exc:
            self._fail("not connected")
            with contextlib.suppress(Exception):
                await self._client.disconnect()
            raise ConnectionLost(str(exc) or type(exc).__name__) from exc
        if self._lost is not None:
            raise ConnectionLost(self._lost)

    async def disconnect(self) -> None:
        self._write_acks()
        self._fail("disconnected")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.disconnect(), TIMEOUT)

    async def subscribe(self, topic_filter: str, qos: int) -> None:
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        suback = asyncio.get_running_loop().create_future()
        mid = self._client.subscribe(topic_filter, qos=qos)
        self._subacks[mid] = suback
        await self._settled(suback, f"no SUBACK for {topic_filter}")

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
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        properties: dict[str, Any] = {}
        if headers and self._version5:
            properties["user_property"] = list(headers.items())
        self._client.publish(topic, payload, qos=qos, retain=retain, **properties)
        if qos:
            acknowledged = asyncio.get_running_loop().create_future()
            self._outbox.waiters[self._outbox.last_mid] = acknowledged
            await self._settled(
                acknowledged, f"no acknowledgement of a publish to {topic}"
            )

    async def _settled(self, future: asyncio.Future[None], timed_out: str) -> None:
        try:
            await asyncio.wait_for(future, TIMEOUT)
        except TimeoutError:
            raise ConnectionLost(f"{timed_out} within {TIMEOUT:.0f} s") from None

    async def receive(self) -> Delivery:
        queue = self._queue
        while not queue:
            # What arrived before the connection was lost is still handed over.
            if self._lost is not None:
                raise ConnectionLost(self._lost)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return queue.popleft()

    @property
    def max_packet_size(self) -> int | None:
        """The largest packet the broker takes, when its MQTT 5 CONNACK says."""
        announced = self._client._package_handler._connack_properties.get(
            "maximum_packet_size"
        )
        if isinstance(announced, list | tuple) and announced:
            announced = announced[0]
        return announced if isinstance(announced, int) else None

    def queued(self) -> int:
        return len(self._queue)

    def listen(self, received: Callable[[Delivery], None] | None) -> None:
        self._received = received
        if received is not None:
            queue = self._queue
            while queue:
                received(queue.popleft())

    async def lost(self) -> None:
        while self._lost is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        raise ConnectionLost(self._lost)

    def ack(self, mid: int, qos: int) -> None:
        acks = self._acks
        if not acks:
            asyncio.get_running_loop().call_soon(self._write_acks)
        # Remaining length 2: a packet id alone means success, in MQTT 3.1.1 and 5.
        acks += bytes((_ACK_COMMANDS[qos], 2, mid >> 8, mid & 0xFF))

    def _write_acks(self) -> None:
        if self._acks and self._lost is None:
            self._client._connection.send_package(bytes(self._acks))
        self._acks.clear()
