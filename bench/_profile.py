"""Where a subscriber's time goes while it works: py-spy attached for the measured window
only (start-up and idle waiting excluded), its samples summed per function and per layer.

When py-spy is not installed (`pip install py-spy`), the scripts' --profile runs the
generated service under cProfile instead (`profile_report`).
"""

from __future__ import annotations

import pstats
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from _common import table

RATE = 500  # samples per second


def available() -> bool:
    return shutil.which("py-spy") is not None


def start(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(RATE),
            "--format",
            "raw",
            "-o",
            str(out),
            "--duration",
            "600",
            "--threads",
            "--full-filenames",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C makes py-spy write what it sampled."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _frame_name(frame: str) -> tuple[str, str]:
    """("function (file:line)" without the line, the file) of one py-spy frame."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(path).parent.name}/{Path(path).name})", path


LAYERS = (
    ("_generated/", "generated service code (self)"),
    ("/bench/", "benchmark code (raw loop, sink)"),
    ("pydantic", "pydantic (validation, models)"),
    ("/asyncio/", "asyncio event loop, tasks, locks"),
    ("/selectors.py", "asyncio event loop, tasks, locks"),
    ("/socket.py", "sockets (send/recv)"),
    ("/nats/", "nats-py client"),
    ("/paho/", "paho-mqtt client"),
    ("/aiomqtt/", "aiomqtt"),
    ("/logging/", "logging"),
)


def _layer(path: str) -> str:
    for needle, layer in LAYERS:
        if needle in path:
            return layer
    return "other"


def report(path: Path, messages: int, top: int, title: str, per_message_us: float) -> str:
    """Tables of the main thread's busy samples. `per_message_us` (1e6 / the throughput
    measured without a profiler) splits each message's wall time by share of samples."""
    if not path.exists():
        return f"(py-spy wrote no samples to {path})"
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [frame for frame in stack.split(";") if frame]
        if not raw_frames or "MainThread" not in raw_frames[0]:
            continue  # the executor thread aiomqtt connects in, idle but sampled
        if any(frame.startswith("_find_and_load ") for frame in raw_frames):
            continue  # importing: start-up, not per-message work
        frames = [_frame_name(frame) for frame in raw_frames[1:]]
        if not frames:
            continue
        total += count
        leaf, leaf_path = frames[-1]
        self_counts[leaf] += count
        layers[_layer(leaf_path)] += count
        for name in {name for name, _ in frames}:
            inclusive[name] += count
    if total == 0:
        return "(no busy samples)"

    def us(count: int) -> str:
        return f"{count / total * per_message_us:.2f}"

    self_rows = [
        [us(count), f"{count / total * 100:.1f}%", name]
        for name, count in self_counts.most_common(top)
    ]
    generated_rows = [
        [us(count), f"{count / total * 100:.1f}%", name]
        for name, count in inclusive.most_common()
        if ("_generated/" in name or "_sink.py" in name)
        and not name.startswith(("main ", "<module> "))
    ][:top]
    layer_rows = [
        [us(count), f"{count / total * 100:.1f}%", layer] for layer, count in layers.most_common()
    ]
    busy = total / RATE
    return "\n\n".join(
        [
            f"{title}: py-spy (non-blocking, main thread; idle and imports left out), "
            f"{total:,} busy samples at {RATE}/s ({busy:.2f} s for {messages:,} messages); "
            f"us/msg = share x {per_message_us:.1f} us, the time per message measured "
            "without profiler",
            table(["us/msg", "share", "layer (self time)"], layer_rows),
            table(
                ["self us/msg", "share", "function"], self_rows, title="top functions, self time"
            ),
            table(
                ["incl us/msg", "share", "function"],
                generated_rows,
                title="generated service functions, inclusive time (what each costs per message)",
            ),
        ]
    )


def profile_report(path: Path, messages: int, top: int) -> str:
    """The generated service's costliest functions, in microseconds per message."""
    stats = pstats.Stats(str(path))
    entries = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = f"{Path(filename).parent.name}/{Path(filename).name}:{line}({name})"
        if filename == "~":
            short = name
        if "epoll" in name:
            continue  # waiting for the socket, not working (and start-up idle time)
        entries.append((tottime, cumtime, calls, short))
    total = sum(entry[0] for entry in entries)
    rows = [
        [
            f"{tottime / messages * 1e6:.2f}",
            f"{cumtime / messages * 1e6:.2f}",
            f"{calls / messages:.2f}",
            f"{tottime / total * 100:.1f}%",
            name,
        ]
        for tottime, cumtime, calls, name in sorted(entries, reverse=True)[:top]
    ]
    by_cumulative = [
        [f"{cumtime / messages * 1e6:.2f}", f"{calls / messages:.2f}", name]
        for _tottime, cumtime, calls, name in sorted(entries, key=lambda e: -e[1])[:top]
        if calls / messages >= 0.5
    ]
    return (
        table(
            ["self us/msg", "cum us/msg", "calls/msg", "self share", "function"],
            rows,
            title=f"cProfile of the generated service, QoS 1 flood of {messages:,} messages "
            "(whole process, start-up included, epoll waits left out; cProfile inflates every "
            "call: compare shares, not absolute times); by self time",
        )
        + "\n\n"
        + table(
            ["cum us/msg", "calls/msg", "function"],
            by_cumulative,
            title="the same, by cumulative time (functions called at least every other message)",
        )
    )


def subscriber_report(path: Path, messages: int, top: int, impl: str, run: str, rate: float) -> str:
    """`report` on one subscriber's run at `rate` msg/s; for any but the generated service
    only its first two parts (title and layers), enough to compare with."""
    text = report(path, messages, top, f"{impl} subscriber, {run}", 1e6 / rate)
    return text if impl == "generated" else "\n\n".join(text.split("\n\n")[:2])
