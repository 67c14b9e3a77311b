"""The spec's message examples, fed through the service without a broker.

asyncgen wrote this file once; it is yours to extend.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from iot_device_management_nats._generated.service import MemoryTransport, Service
from iot_device_management_nats._generated.settings import Settings

EXAMPLES: list[Any] = [
    pytest.param(
        "receiveTemperatureReading",
        "sensors.temperature.sensor001",
        {"deviceId": "sensor001", "value": 22.4, "timestamp": "2024-01-15T10:30:00Z"},
        id="normal",
    ),
    pytest.param(
        "receiveTemperatureReading",
        "sensors.temperature.sensor001",
        {
            "deviceId": "sensor002",
            "value": 31.7,
            "timestamp": "2024-01-15T10:30:05Z",
            "flags": 1,
        },
        id="high",
    ),
    pytest.param(
        "receiveStatusRequest",
        "devices.sensor001.status",
        {"deviceId": "sensor001", "requestedAt": "2024-01-15T10:30:00Z"},
        id="request",
    ),
    pytest.param(
        "receiveDeviceAnnouncement",
        "devices.announce",
        {
            "deviceId": "sensor001",
            "deviceType": "sensor",
            "capabilities": ["temperature", "humidity"],
            "firmwareVersion": "2.1.0",
            "metadata": {"location": "building-a/floor-1", "model": "TH-200"},
            "announcedAt": "2024-01-15T10:00:00Z",
        },
        id="sensor",
    ),
]


def make_service() -> tuple[Service, MemoryTransport]:
    transport = MemoryTransport()
    # model_validate skips the environment and .env: the tests see the defaults.
    return Service(Settings.model_validate({}), transport=transport), transport


@pytest.mark.parametrize(("operation", "address", "payload"), EXAMPLES)
def test_example_is_handled(operation: str, address: str, payload: Any) -> None:
    service, _ = make_service()
    result = asyncio.run(service.dispatch(address, json.dumps(payload).encode()))
    assert result.status == "handled", result.reason
    assert result.operation == operation
    assert service.stats[operation].handled == 1


def test_invalid_json_is_dead_lettered() -> None:
    service, transport = make_service()
    address = "sensors.temperature.sensor001"
    result = asyncio.run(service.dispatch(address, b"{not json"))
    assert result.status == "invalid"
    dead_letters = [
        m
        for m in transport.published
        if m.subject == service.settings.nats_dead_letter_subject
    ]
    assert len(dead_letters) == 1
    assert json.loads(dead_letters[0].payload)["payload"] == "{not json"
