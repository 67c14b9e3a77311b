"""Where a subscriber's time goes while it works: py-spy attached for the measured window
only (start-up and idle waiting excluded), its samples summed per function and per layer.

When py-spy is not installed (`pip install py-spy`), the scripts' --profile runs the
generated service under cProfile instead (mqtt_throughput.profile_report).
"""

from __future__ import annotations

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
