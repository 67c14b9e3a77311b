"""The spec's message examples, fed through the service without a broker.

asyncgen wrote this file once; it is yours to extend.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from iot_device_management._generated.service import MemoryTransport, Service
from iot_device_management._generated.settings import Settings

EXAMPLES: list[Any] = [
    pytest.param(
        "receiveTelemetry",
        "devices/sensor001/telemetry",
        {
            "deviceId": "sensor001",
            "timestamp": "2024-01-15T10:30:00Z",
            "sensors": {
                "temperature": 23.5,
                "humidity": 65.2,
                "pressure": 1013.25,
                "battery": 87.3,
            },
            "location": {"latitude": 37.7749, "longitude": -122.4194, "altitude": 16.0},
            "metadata": {
                "firmwareVersion": "2.1.0",
                "model": "TH-200",
                "manufacturer": "Acme Sensors",
                "serialNumber": "SN-000123",
            },
        },
        id="fullReading",
    ),
    pytest.param(
        "receiveTelemetry",
        "devices/sensor001/telemetry",
        {
            "deviceId": "sensor002",
            "timestamp": "2024-01-15T10:31:00Z",
            "sensors": {"temperature": 81.2},
        },
        id="minimalReading",
    ),
    pytest.param(
        "receiveStatus",
        "devices/sensor001/status",
        {
            "deviceId": "sensor001",
            "status": "online",
            "health": {"cpu": 45.2, "memory": 67.8, "disk": 23.1, "uptime": 86400},
            "lastSeen": "2024-01-15T10:30:00Z",
        },
        id="online",
    ),
    pytest.param(
        "receiveStatus",
        "devices/sensor001/status",
        {
            "deviceId": "sensor002",
            "status": "error",
            "health": {"cpu": 97.5, "memory": 88.0, "disk": 91.4, "uptime": 120},
            "errors": [
                {
                    "code": "E_SENSOR_TIMEOUT",
                    "message": "Humidity sensor did not answer within 5 s.",
                    "timestamp": "2024-01-15T10:29:55Z",
                }
            ],
            "lastSeen": "2024-01-15T10:30:00Z",
        },
        id="error",
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
    address = "devices/sensor001/telemetry"
    result = asyncio.run(service.dispatch(address, b"{not json"))
    assert result.status == "invalid"
    dead_letters = [
        m
        for m in transport.published
        if m.topic == service.settings.mqtt_dead_letter_topic
    ]
    assert len(dead_letters) == 1
    assert json.loads(dead_letters[0].payload)["payload"] == "{not json"
