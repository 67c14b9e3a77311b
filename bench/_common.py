"""Helpers shared by the benchmark scripts: processes, brokers, memory, tables.

Nothing here talks to anything but 127.0.0.1, and every wait is bounded in time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
MIB = 1024 * 1024


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
