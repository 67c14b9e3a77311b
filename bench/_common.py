"""Helpers shared by the benchmark scripts: processes, brokers, memory, tables.

Nothing here talks to anything but 127.0.0.1, and every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
EXAMPLES = REPO / "examples"
MIB = 1024 * 1024
PYTHON = sys.executable


# -- processes -------------------------------------------------------------------------


@dataclass
class Run:
    """One finished process: wall time, CPU time and peak RSS (from wait4's rusage), exit code."""

    seconds: float
    max_rss_mib: float
    returncode: int
    cpu_seconds: float = 0.0


def run_measured(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300.0,
) -> Run:
    """Run `argv` to completion; time it and read its peak RSS with os.wait4."""
    start = time.perf_counter()
    process = subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux.
    return Run(seconds, usage.ru_maxrss / 1024, process.returncode, usage.ru_utime + usage.ru_stime)


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; only ever the process we started."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a live process, in MiB, from /proc/<pid>/status."""
    values: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB
    return values


def run_header(details: str) -> str:
    """The first line of every script's output: when, which Python, how many CPUs, which
    commit of asyncgen, then the script's own `details`."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}  python {sys.version.split()[0]}  "
        f"{os.cpu_count()} CPUs  asyncgen at {commit or '?'}  {details}"
    )


# -- the generated service and its subscribers --------------------------------------------


def generate_example(example: str, work: Path, handlers: dict[str, str]) -> Path:
    """Generate examples/<example>/asyncapi.yaml into `work`/generated (with a cache of its
    own in `work`/cache) and overwrite the named handler modules with the given sources."""
    project = work / "generated"
    subprocess.run(
        [
            PYTHON,
            "-m",
            "asyncgen",
            "generate",
            str(EXAMPLES / example / "asyncapi.yaml"),
            "-o",
            str(project),
        ],
        check=True,
        env={**os.environ, "ASYNCGEN_CACHE_DIR": str(work / "cache")},
        capture_output=True,
        timeout=300,
    )
    for relative, source in handlers.items():
        (project / "src" / relative).write_text(source)
    return project


@dataclass
class Subscriber:
    """A subscriber process started by `SubscriberRuns.spawn`; its sink (bench/_sink.py)
    writes `out` once it has counted its messages, and `out`.ready once it is subscribed."""

    impl: str
    process: subprocess.Popen[bytes]
    out: Path
    log: Path
    stop_timeout: float = 10.0

    def finished(self) -> bool:
        return self.out.exists() or self.process.poll() is not None

    def result(self) -> dict[str, Any] | None:
        return json.loads(self.out.read_text()) if self.out.exists() else None

    def wait_result(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while not self.finished():
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        return self.result()

    async def wait_result_async(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while not self.finished():
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.02)
        return self.result()

    def ready(self, deadline: float) -> bool:
        """Whether it is subscribed; stops it and exits when it died or missed `deadline`."""
        if Path(str(self.out) + ".ready").exists():
            return True
        if time.monotonic() > deadline or self.process.poll() is not None:
            self.stop()
            raise SystemExit(
                f"{self.impl} subscriber did not come up:\n{self.log.read_text()[-3000:]}"
            )
        return False

    def memory(self) -> dict[str, float]:
        return proc_status(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process, timeout=self.stop_timeout)


class SubscriberRuns:
    """Starts the subscribers of one benchmark: the generated service (`python -m package`,
    optionally under cProfile) or a raw loop script, each run with its own result and log."""

    def __init__(self, work: Path, project: Path, package: str, stop_timeout: float) -> None:
        self.work = work
        self.project = project
        self.package = package
        self.stop_timeout = stop_timeout
        self.runs = 0

    def spawn(
        self,
        impl: str,
        raw_argv: list[str],
        settings: dict[str, str],
        *,
        count: int,
        warmup: int,
        mode: str,
        profile_to: Path | None = None,
    ) -> Subscriber:
        self.runs += 1
        out = self.work / f"result-{self.runs}.json"
        log = self.work / f"subscriber-{self.runs}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.project / "src"), str(BENCH)]),
            "LOG_LEVEL": "WARNING",
            "STATS_INTERVAL": "0",
            # Room for the whole flood, as the raw subscribers have: throughput is
            # measured on what is handled, and a bounded inbox would drop the excess
            # (bench/flood_memory.py measures that bound).
            "MAX_PENDING_MESSAGES": "1000000",
            **settings,
            "BENCH_COUNT": str(count),
            "BENCH_WARMUP": str(warmup),
            "BENCH_OUT": str(out),
            "BENCH_MODE": mode,
        }
        if impl == "generated":
            argv = [PYTHON, "-m", self.package]
            if profile_to is not None:
                argv = [PYTHON, "-m", "cProfile", "-o", str(profile_to), "-m", self.package]
        else:
            argv = raw_argv
        process = subprocess.Popen(
            argv, cwd=self.project, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        return Subscriber(impl, process, out, log, self.stop_timeout)


def throughput(result: dict[str, Any] | None) -> dict[str, float]:
    """msg/s and CPU microseconds per message of a throughput run's sink result."""
    if result is None:
        return {"rate": float("nan"), "cpu_us": float("nan")}
    return {
        "rate": float(result["measured"]) / float(result["seconds"]),
        "cpu_us": float(result["cpu_seconds"]) / float(result["measured"]) * 1e6,
    }


def latency_figures(result: dict[str, Any]) -> dict[str, float]:
    """p50, p99 and max in ms of a latency run's sink result, the first tenth left out."""
    latencies = [value / 1e6 for value in result["latencies_ns"]]
    steady = latencies[len(latencies) // 10 :]  # the first tenth is warm-up
    return {"p50": percentile(steady, 0.50), "p99": percentile(steady, 0.99), "max": max(steady)}


@dataclass
class Collected:
    """Figures of the throughput rounds, keyed by (impl, kind of run)."""

    rates: dict[tuple[str, Any], list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu_us: dict[tuple[str, Any], list[float]] = field(default_factory=lambda: defaultdict(list))
    #: generated/raw of the runs next to each other in the same round
    paired: dict[Any, list[float]] = field(default_factory=lambda: defaultdict(list))
    idle: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    flood_hwm: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)

    def add(
        self, impl: str, kind: Any, outcome: dict[str, Any], this_round: dict[str, float]
    ) -> None:
        """One successful run; its memory too when it measured any."""
        self.rates[(impl, kind)].append(outcome["rate"])
        self.cpu_us[(impl, kind)].append(outcome["cpu_us"])
        this_round[impl] = outcome["rate"]
        if "idle" in outcome:
            self.idle[impl].append(outcome["idle"].get("VmRSS", 0.0))
            self.flood_hwm[impl].append(outcome["loaded"].get("VmHWM", 0.0))

    def pair(self, kind: Any, this_round: dict[str, float]) -> None:
        if "raw" in this_round and "generated" in this_round:
            self.paired[kind].append(this_round["generated"] / this_round["raw"])

    def runs_line(self, kind_prefix: str = "") -> str:
        """Every run's msg/s, by kind of run and then impl."""
        return "runs (msg/s): " + "; ".join(
            f"{impl} {kind_prefix}{kind}: " + " ".join(f"{rate:,.0f}" for rate in rates)
            for (impl, kind), rates in sorted(
                self.rates.items(), key=lambda kv: (kv[0][1], kv[0][0])
            )
        )


def add_profile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", action="store_true", help="also cProfile the service")
    parser.add_argument("--top", type=int, default=20, help="functions in the profile")


# -- network and brokers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def binary(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        raise SystemExit(f"{name} is not installed (looked on PATH and in /usr/sbin)")
    return path


class Mosquitto:
    """A mosquitto of our own on a free loopback port, with a config we write."""

    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        self.binary = binary("mosquitto")
        self.workdir = workdir
        self.extra_config = extra_config
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + ("user root\n" if os.geteuid() == 0 else "")
            + "allow_anonymous true\n"
            # Queue without limit for a subscriber that lags, so that no message is dropped
            # and a slow subscriber shows as time, not as loss.
            + "max_queued_messages 0\n"
            + "persistence false\n"
            + self.extra_config
        )
        self.process = subprocess.Popen(
            [self.binary, "-c", str(config)],
            stdout=(self.workdir / "mosquitto.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


class NatsServer:
    """A nats-server of our own on a free loopback port, with JetStream."""

    def __init__(self, workdir: Path) -> None:
        self.binary = binary("nats-server")
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "nats.conf"
        config.write_text(
            'server_name: "asyncgen-bench"\n'
            f"listen: 127.0.0.1:{self.port}\n"
            "http: 0\n"
            # A slow consumer is not cut off while the publisher floods.
            "max_pending: 512MB\n"
            'write_deadline: "30s"\n'
            f'jetstream {{ store_dir: "{self.workdir / "jetstream"}" }}\n'
        )
        self.process = subprocess.Popen(
            [self.binary, "-c", str(config)],
            stdout=(self.workdir / "nats-server.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


# -- figures and tables ----------------------------------------------------------------


def latency_cells(results: Sequence[dict[str, Any]]) -> list[str]:
    """p50, p99, each run's p99, max and send rate over the successful latency runs."""
    ok = [r for r in results if r["ok"]]
    if not ok:
        return ["FAILED", "-", "-", "-", "-"]
    return [
        f"{median([r['p50'] for r in ok]):.2f}",
        f"{median([r['p99'] for r in ok]):.2f}",
        " ".join(f"{r['p99']:.1f}" for r in ok),
        f"{max(r['max'] for r in ok):.1f}",
        f"{median([r['sent_rate'] for r in ok]):,.0f}",
    ]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A plain, aligned text table; numbers right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(row: Sequence[str], numeric: Sequence[bool]) -> str:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    numeric = [
        bool(cells) and all(_looks_numeric(row[index]) for row in cells)
        for index in range(len(headers))
    ]
    out = []
    if title:
        out.append(title)
    out.append(line(list(headers), numeric))
    out.append("  ".join("-" * width for width in widths))
    out.extend(line(row, numeric) for row in cells)
    return "\n".join(out)


def _looks_numeric(cell: str) -> bool:
    stripped = cell.strip().rstrip("x%").replace(",", "").lstrip("+")
    try:
        float(stripped)
    except ValueError:
        return cell in ("-", "n/a")
    return True
