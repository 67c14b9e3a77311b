"""The runtime's router: the most specific route first, every message an operation
accepts tried before a payload is called invalid, and payload kinds besides JSON."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import msgpack
import pytest
from pydantic import BaseModel
from runtime_fakes import Calls, DeviceParams, Reading, mqtt_route, mqtt_service

from asyncgen.runtime.addresses import MQTT_TOPIC, Address, NoParams
from asyncgen.runtime.payloads import Accepted, encode
from asyncgen.runtime.routing import RouteTable


class Ping(BaseModel):
    type: Literal["ping"]
    id: int


class Pong(BaseModel):
    type: Literal["pong"]
    id: int


class Note(BaseModel):
    text: str


def dispatch(service: Any, topic: str, payload: bytes) -> Any:
    return asyncio.run(service.dispatch(topic, payload))


def dead_letters(service: Any) -> list[Any]:
    base = service.settings.mqtt_dead_letter_topic
    return [m for m in service.transport.published if m.topic.startswith(base + "/")]


def test_a_literal_level_beats_a_parameter_declared_before_it() -> None:
    calls = Calls()
    service = mqtt_service(
        [
            mqtt_route("anyShow", "screens/{type}/show", calls.handler("anyShow"), Accepted(Note)),
            mqtt_route(
                "imageShow", "screens/image/show", calls.handler("imageShow"), Accepted(Note)
            ),
        ]
    )
    assert dispatch(service, "screens/image/show", b'{"text": "a"}').operation == "imageShow"
    assert dispatch(service, "screens/video/show", b'{"text": "b"}').operation == "anyShow"
    assert calls.operations == ["imageShow", "anyShow"]


def test_the_route_table_orders_candidates_by_specificity_then_table_order() -> None:
    async def handler(*args: object) -> None: ...

    def route(operation: str, template: str) -> Any:
        return mqtt_route(operation, template, handler, Accepted(bytes, "bytes"))

    routes = [
        route("any_any", "devices/{a}/{b}"),
        route("any_status", "devices/{id}/status"),
        route("all_any", "devices/all/{b}"),
        route("all_status", "devices/all/status"),
        route("twin", "devices/{id}/status"),
    ]
    for order in (routes, routes[::-1]):
        table = RouteTable(order)
        found = [r.operation for r in table.candidates("devices/all/status")]
        equals = [r.operation for r in order if r.operation in ("any_status", "twin")]
        assert found == ["all_status", "all_any", *equals, "any_any"]
        assert table.candidates("devices/all/status") == table.candidates("devices/all/status")
        assert [r.operation for r in table.candidates("devices/x/y/status")] == []


def test_a_valid_message_of_the_second_operation_on_an_address_is_handled() -> None:
    calls = Calls()
    service = mqtt_service(
        [
            mqtt_route("pings", "chat", calls.handler("pings"), Accepted(Ping)),
            mqtt_route("notes", "chat", calls.handler("notes"), Accepted(Note)),
        ]
    )
    result = dispatch(service, "chat", b'{"text": "hello"}')
    assert (result.status, result.operation) == ("handled", "notes")
    assert service.stats["pings"].received == 0
    assert dead_letters(service) == []


def test_every_message_of_an_operation_is_tried_and_the_handler_gets_the_one_that_fits() -> None:
    calls = Calls()
    service = mqtt_service(
        [mqtt_route("events", "events", calls.handler("events"), Accepted(Ping), Accepted(Note))]
    )
    assert dispatch(service, "events", b'{"text": "hi"}').status == "handled"
    assert dispatch(service, "events", b'{"type": "ping", "id": 3}').status == "handled"
    assert [type(message) for _, message, _, _ in calls.calls] == [Note, Ping]


def test_a_discriminating_field_picks_the_message_and_names_its_errors() -> None:
    calls = Calls()
    ping = Accepted(Ping, match={"type": ("ping",)})
    pong = Accepted(Pong, match={"type": ("pong",)})
    service = mqtt_service([mqtt_route("rtm", "rtm", calls.handler("rtm"), ping, pong)])
    assert dispatch(service, "rtm", b'{"type": "pong", "id": 1}').status == "handled"
    assert isinstance(calls.calls[0][1], Pong)
    result = dispatch(service, "rtm", b'{"type": "pong", "id": "x"}')
    assert result.status == "invalid"
    assert result.reason.startswith("payload does not match the schema: Pong: id:")
    assert "Ping" not in result.reason


def test_a_payload_no_message_accepts_is_dead_lettered_once_with_every_reason() -> None:
    service = mqtt_service(
        [mqtt_route("events", "events", Calls().handler("events"), Accepted(Ping), Accepted(Note))]
    )
    result = dispatch(service, "events", b'{"other": 1}')
    assert result.status == "invalid"
    assert "matches none of the messages" in result.reason
    assert "Ping:" in result.reason and "Note:" in result.reason
    [dead_letter] = dead_letters(service)
    assert dead_letter.topic == "dead-letter/events/invalid/events"
    assert dead_letter.payload == b'{"other": 1}'
    assert service.stats["events"].invalid == 1


def test_invalid_parameters_fall_through_to_a_route_that_accepts_the_address() -> None:
    calls = Calls()
    service = mqtt_service(
        [
            mqtt_route(
                "strict",
                "devices/{deviceId}",
                calls.handler("strict"),
                Accepted(Note),
                params=DeviceParams,
            ),
            mqtt_route("loose", "devices/{any}", calls.handler("loose"), Accepted(Note)),
        ]
    )
    assert dispatch(service, "devices/ABC", b'{"text": "x"}').operation == "loose"
    assert dispatch(service, "devices/abc", b'{"text": "x"}').operation == "strict"
    assert calls.calls[1][2] == DeviceParams(deviceId="abc")


def test_invalid_parameters_with_no_other_route_are_dead_lettered() -> None:
    service = mqtt_service(
        [
            mqtt_route(
                "strict",
                "devices/{deviceId}",
                Calls().handler("s"),
                Accepted(Note),
                params=DeviceParams,
            )
        ]
    )
    result = dispatch(service, "devices/ABC", b'{"text": "x"}')
    assert result.status == "invalid"
    assert result.reason.startswith("invalid topic parameters: deviceId:")


def test_an_address_no_route_takes_is_unrouted_and_not_dead_lettered() -> None:
    service = mqtt_service([mqtt_route("notes", "notes", Calls().handler("n"), Accepted(Note))])
    assert dispatch(service, "elsewhere", b"{}").status == "unrouted"
    assert service.transport.published == []


# -- payload kinds ----------------------------------------------------------------------


def test_a_text_message_reaches_the_handler_as_str() -> None:
    calls = Calls()
    service = mqtt_service([mqtt_route("log", "log", calls.handler("log"), Accepted(str, "text"))])
    assert dispatch(service, "log", "grüße".encode()).status == "handled"
    assert calls.calls[0][1] == "grüße"
    result = dispatch(service, "log", b"\xff\xfe")
    assert result.status == "invalid"
    assert "not UTF-8" in result.reason


def test_a_bytes_message_reaches_the_handler_unchanged() -> None:
    calls = Calls()
    service = mqtt_service(
        [mqtt_route("raw", "raw", calls.handler("raw"), Accepted(bytes, "bytes"))]
    )
    assert dispatch(service, "raw", b"\x00\xff{").status == "handled"
    assert calls.calls[0][1] == b"\x00\xff{"


def test_an_operation_without_messages_gets_bytes() -> None:
    calls = Calls()
    service = mqtt_service([mqtt_route("raw", "raw", calls.handler("raw"))])
    assert dispatch(service, "raw", b"anything").status == "handled"
    assert calls.calls[0][1] == b"anything"


def test_a_msgpack_message_is_unpacked_and_validated() -> None:
    calls = Calls()
    route = mqtt_route("packed", "packed", calls.handler("packed"), Accepted(Reading, "msgpack"))
    service = mqtt_service([route])
    packed = msgpack.packb({"device": "d1", "value": 2.5})
    assert dispatch(service, "packed", packed).status == "handled"
    assert calls.calls[0][1] == Reading(device="d1", value=2.5)
    assert dispatch(service, "packed", msgpack.packb({"device": "d1"})).status == "invalid"
    result = dispatch(service, "packed", b"\xc1")
    assert (result.status, result.reason.startswith("payload refused: not MessagePack")) == (
        "invalid",
        True,
    )


@pytest.mark.parametrize(
    ("message", "kind", "expected"),
    [
        (Reading(device="d", value=1.0), "json", b'{"device":"d","value":1.0}'),
        ("héllo", "text", "héllo".encode()),
        (b"\x01\x02", "bytes", b"\x01\x02"),
        (Reading(device="d", value=1.0), "msgpack", msgpack.packb({"device": "d", "value": 1.0})),
    ],
)
def test_encode_writes_each_kind(message: Any, kind: Any, expected: bytes) -> None:
    assert encode(message, kind) == expected


def test_an_address_refuses_parameter_values_that_change_its_meaning() -> None:
    address = Address("devices/{deviceId}/status", DeviceParams, MQTT_TOPIC)
    assert address.subscription == "devices/+/status"
    assert address.build({"deviceId": "abc"}) == "devices/abc/status"
    assert Address("a/b", NoParams, MQTT_TOPIC).parse("a/b") == NoParams()
    with pytest.raises(ValueError, match="must be non-empty"):
        address.format(DeviceParams.model_construct(device_id="a/+"))
