"""A flood of bad messages costs a few log lines a minute, not one each; every message is
still dead-lettered and counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import EXAMPLES, generate

CASES = {
    "mqtt": ("iot_device_management", "receiveTelemetry", "devices/sensor001/telemetry"),
    "nats": ("iot_device_management_nats", "receiveTemperatureReading", "sensors.temperature.s1"),
}
#: A valid message of each case, and the handler field of its operation.
VALID = {
    "iot_device_management": (
        '{"deviceId": "sensor001", "timestamp": "2024-01-15T10:30:00Z", "sensors": {}}',
        "receive_telemetry",
    ),
    "iot_device_management_nats": (
        '{"deviceId": "s1", "value": 1.5, "timestamp": "2024-01-15T10:30:00Z"}',
        "receive_temperature_reading",
    ),
}

SCRIPT = """
import asyncio, dataclasses, json, logging, sys
from {package}._generated.handlers import default_handlers
from {package}._generated.service import MemoryTransport, Service
from {package}._generated.settings import Settings

limit, floods = int(sys.argv[1]), json.loads(sys.argv[2])
records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.levelname, record.getMessage()))

logging.getLogger("{package}").addHandler(Keep())
logging.getLogger("{package}").setLevel(logging.INFO)
now = [0.0]
transport = MemoryTransport()
async def fail(*args):
    raise RuntimeError("the handler failed")

handlers = default_handlers()
if sys.argv[3] == "fail":
    handlers = dataclasses.replace(handlers, **{{{field!r}: fail}})
payload = {payload!r}.encode() if sys.argv[3] == "fail" else b"not json"
service = Service(
    Settings.model_validate({{"log_rejections_per_minute": limit}}),
    handlers=handlers,
    transport=transport,
)
service._log_throttle.clock = lambda: now[0]

async def flood():
    for seconds, count in floods:
        now[0] = seconds
        for _ in range(count):
            await service.dispatch({address!r}, payload)

asyncio.run(flood())
print(json.dumps({{
    "records": records,
    "dead_lettered": service.stats[{operation!r}].dead_lettered,
    "published": len(transport.published),
}}))
"""


@pytest.fixture(scope="module", params=sorted(CASES))
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    output = tmp_path_factory.mktemp(request.param)
    result = generate(EXAMPLES / request.param / "asyncapi.yaml", output)
    assert result.returncode == 0, result.stderr
    return (output, *CASES[request.param])


def flood(
    project: tuple, limit: int, floods: list[tuple[float, int]], kind: str = "invalid"
) -> dict:
    output, package, operation, address = project
    payload, field = VALID[package]
    script = SCRIPT.format(
        package=package, operation=operation, address=address, payload=payload, field=field
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(limit), json.dumps(floods), kind],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(output / "src")},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rejected(outcome: dict) -> list[str]:
    return [text for level, text in outcome["records"] if level == "ERROR"]


def test_a_flood_logs_the_limit_and_dead_letters_every_message(project: tuple) -> None:
    outcome = flood(project, 5, [(0.0, 100)])
    assert len(rejected(outcome)) == 5
    assert all("rejected: payload does not match" in text for text in rejected(outcome))
    assert outcome["dead_lettered"] == 100
    assert outcome["published"] == 100


def test_after_the_minute_the_held_back_lines_are_counted(project: tuple) -> None:
    outcome = flood(project, 5, [(0.0, 100), (30.0, 10), (61.0, 1)])
    assert len(rejected(outcome)) == 6
    warnings = [text for level, text in outcome["records"] if level == "WARNING"]
    assert warnings == [f"{project[2]}: 105 more log lines held back in the last 61 s"]
    assert outcome["dead_lettered"] == 111


def test_no_limit_logs_every_message(project: tuple) -> None:
    outcome = flood(project, 0, [(0.0, 50)])
    assert len(rejected(outcome)) == 50


def test_a_failing_handler_costs_one_line_per_message(project: tuple) -> None:
    outcome = flood(project, 4, [(0.0, 10)], kind="fail")
    failures = rejected(outcome)
    assert len(failures) == 4
    assert all(text.startswith("handler of") for text in failures)
    assert outcome["dead_lettered"] == 10
