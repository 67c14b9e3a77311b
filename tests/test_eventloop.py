"""EVENT_LOOP: the loop a generated service runs on (runtime/eventloop.py)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from asyncgen.runtime.eventloop import run


@pytest.mark.parametrize(("event_loop", "module"), [("asyncio", "asyncio"), ("uvloop", "uvloop")])
def test_the_service_runs_on_the_loop_the_setting_names(event_loop: str, module: str) -> None:
    ran_on: list[str] = []

    async def main() -> None:
        ran_on.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    run(main, event_loop)  # type: ignore[arg-type]
    assert ran_on == [module]


def test_a_missing_uvloop_is_one_line_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    started: list[bool] = []

    async def main() -> None:
        started.append(True)

    with pytest.raises(SystemExit, match=r"EVENT_LOOP=uvloop needs the uvloop package.*\[uvloop\]"):
        run(main, "uvloop")
    assert not started
