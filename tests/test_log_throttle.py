"""A flood of bad messages costs a few log lines a minute, not one each; every message is
still dead-lettered and counted. Tested on the runtime's MQTT and NATS services."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from runtime_fakes import Calls, Reading, mqtt_route, mqtt_service, nats_route, nats_service
from runtime_fakes import Settings as FakeSettings

from asyncgen.runtime.core import LogThrottle
from asyncgen.runtime.payloads import Accepted

ADDRESSES = {"mqtt": "devices/d1/readings", "nats": "devices.d1.readings"}
VALID = b'{"device": "d1", "value": 1.5}'


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def flood(
    protocol: str,
    limit: int,
    floods: list[tuple[float, int]],
    caplog: pytest.LogCaptureFixture,
    *,
    fail: bool = False,
) -> tuple[Any, list[tuple[str, str]]]:
    calls = Calls()
    handler = calls.handler("readings", fail=fail)
    settings = FakeSettings(log_rejections_per_minute=limit)
    if protocol == "mqtt":
        route = mqtt_route("readings", ADDRESSES["mqtt"], handler, Accepted(Reading))
        service: Any = mqtt_service([route], settings)
    else:
        route = nats_route("readings", ADDRESSES["nats"], handler, Accepted(Reading))
        service = nats_service([route], settings)
    clock = Clock()
    service._log_throttle.clock = clock
    payload = VALID if fail else b"not json"

    async def run() -> None:
        for seconds, count in floods:
            clock.now = seconds
            for _ in range(count):
                await service.dispatch(ADDRESSES[protocol], payload)

    with caplog.at_level(logging.INFO, logger="svc"):
        asyncio.run(run())
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "svc"]
    return service, records


def errors(records: list[tuple[str, str]]) -> list[str]:
    return [text for level, text in records if level == "ERROR"]


@pytest.mark.parametrize("protocol", ["mqtt", "nats"])
def test_a_flood_logs_the_limit_and_dead_letters_every_message(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    service, records = flood(protocol, 5, [(0.0, 100)], caplog)
    assert len(errors(records)) == 5
    assert all("rejected: payload does not match" in text for text in errors(records))
    assert service.stats["readings"].dead_lettered == 100
    assert len(service.transport.published) == 100


@pytest.mark.parametrize("protocol", ["mqtt", "nats"])
def test_after_the_minute_the_held_back_lines_are_counted(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    service, records = flood(protocol, 5, [(0.0, 100), (30.0, 10), (61.0, 1)], caplog)
    assert len(errors(records)) == 6
    warnings = [text for level, text in records if level == "WARNING"]
    assert warnings == ["readings: 105 more log lines held back in the last 61 s"]
    assert service.stats["readings"].dead_lettered == 111


def test_no_limit_logs_every_message(caplog: pytest.LogCaptureFixture) -> None:
    _, records = flood("mqtt", 0, [(0.0, 50)], caplog)
    assert len(errors(records)) == 50


@pytest.mark.parametrize("protocol", ["mqtt", "nats"])
def test_a_failing_handler_costs_one_line_per_message(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    service, records = flood(protocol, 4, [(0.0, 10)], caplog, fail=True)
    failures = errors(records)
    assert len(failures) == 4
    assert all(text.startswith("handler of") for text in failures)
    assert service.stats["readings"].dead_lettered == 10


def test_subjects_are_throttled_apart() -> None:
    throttle = LogThrottle(2, clock=Clock())
    assert [throttle.allow("a") for _ in range(3)] == [True, True, False]
    assert throttle.allow("b")
