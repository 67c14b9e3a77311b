"""Models made in a forked child while the templates render: same results, errors
carried back, nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, generate

from asyncgen.errors import UnsupportedError
from asyncgen.render import background
from asyncgen.render.background import Background

pytestmark = pytest.mark.skipif(not background.can_fork(), reason="needs fork and two cores")


def double(value: int) -> int:
    return value * 2


def refuse(text: str) -> int:
    raise UnsupportedError(f"unsupported: {text}")


def pid_of_worker() -> int:
    return os.getpid()


def die(_: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def test_the_work_runs_in_another_process_and_its_value_comes_back() -> None:
    with Background(pid_of_worker) as job:
        assert job.result() != os.getpid()
    with Background(double, (21,)) as job:
        assert job.result() == 42


def test_an_exception_in_the_child_is_raised_here_with_its_message() -> None:
    with Background(refuse, ("a schema",)) as job, pytest.raises(UnsupportedError) as caught:
        job.result()
    assert str(caught.value) == "unsupported: a schema"


def test_a_child_that_dies_is_replaced_by_doing_the_work_here() -> None:
    with Background(die, (1,)) as job:
        # The child is killed before it answers; the work then runs in this process,
        # where `die` would kill the test: give it a harmless stand-in.
        job._work = double  # type: ignore[assignment]
        assert job.result() == 2


def test_a_prepared_child_that_died_before_its_job_leaves_the_work_to_this_process() -> None:
    background.prepare(lambda: None)
    child = background._prepared
    assert child is not None and child._pid is not None
    pid = child._pid
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    # A large job, so that writing it to the dead child's pipe fails.
    with Background(len, (b"x" * 5_000_000,)) as job:
        assert job._child is None
        assert job.result() == 5_000_000
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_prepared_child_is_used_once_and_a_discarded_one_ends() -> None:
    background.prepare(lambda: None)
    prepared = background._prepared
    assert prepared is not None
    with Background(double, (5,)) as job:
        assert job._child is prepared
        assert job.result() == 10
    assert background._prepared is None
    background.prepare(lambda: None)
    child = background._prepared
    assert child is not None and child._pid is not None
    pid = child._pid
    background.discard_prepared()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_the_warm_up_stops_where_the_job_arrives_and_runs_whole_without_one(
    tmp_path: Path,
) -> None:
    def mark(name: str) -> None:
        (tmp_path / name).write_text(name)

    def slow_first() -> None:
        mark("started")
        time.sleep(0.5)
        mark("first")

    def wait_for(name: str) -> None:
        deadline = time.monotonic() + 10
        while not (tmp_path / name).exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    # The job is sent while the first step runs: the second step is left to the job.
    background.prepare(slow_first, lambda: mark("second"))
    wait_for("started")
    with Background(double, (4,)) as job:
        assert job.result() == 8
    assert (tmp_path / "first").exists() and not (tmp_path / "second").exists()
    # No job yet: every step runs.
    background.prepare(lambda: mark("third"), lambda: mark("fourth"))
    wait_for("fourth")
    background.discard_prepared()
    assert (tmp_path / "third").exists() and (tmp_path / "fourth").exists()


def test_a_job_that_arrives_before_the_warm_up_still_gets_done(tmp_path: Path) -> None:
    # Whether or not the first step ran, the job is answered: a step left out is only
    # a head start lost.
    for _ in range(5):
        background.prepare(lambda: time.sleep(0.05), lambda: time.sleep(0.05))
        with Background(double, (21,)) as job:
            assert job.result() == 42


def test_generation_in_one_process_and_in_two_gives_the_same_files(tmp_path: Path) -> None:
    trees = {}
    for jobs in ("1", ""):
        env = {**os.environ, "ASYNCGEN_JOBS": jobs, "ASYNCGEN_NO_CACHE": "1"}
        out = tmp_path / f"jobs{jobs or 'N'}"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "asyncgen",
                "generate",
                str(EXAMPLES / "nats" / "asyncapi.yaml"),
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        trees[jobs] = {
            p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
        }
    assert trees["1"] == trees[""]


def test_a_failing_generation_leaves_no_process_behind_and_output_is_not_held(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("asyncapi: 3.0.0\ninfo: {title: x, version: '1'}\nchannels: 7\n")
    started = time.monotonic()
    # capture_output waits for every holder of the pipes: a child keeping them would show.
    result = generate(spec, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out").exists()
    assert processes_mentioning(str(spec)) == []


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line holds `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found
