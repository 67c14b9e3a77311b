"""The generated NATS service against raw nats-py doing the same work.

    python bench/nats_throughput.py            # ~2 minutes
    python bench/nats_throughput.py --quick    # ~40 s
    python bench/nats_throughput.py --profile  # + where the subscribers' time goes (py-spy,
                                               #   else cProfile of the generated service)

Both subscribers run on the same nats-server (started here with JetStream on a free
loopback port), get the same payloads (the spec's examples), validate with the same
`TypeAdapter(model).validate_json` and call the same trivial handler (bench/_sink.py).
The generated service is generated into a temporary folder from examples/nats/asyncapi.yaml
with its `receive_temperature_reading` and `receive_device_announcement` handlers replaced.

- core NATS: a nats-py flood publisher in its own process (bench/_nats_pub.py; its rate is
  printed, to show it outpaces the subscribers) sends N TemperatureReadings on
  `sensors.temperature.sensor001`; the generated service's queue subscription against a
  raw `nc.subscribe(cb=...)` with the same queue group; message WARMUP to N timed.
- JetStream: N DeviceAnnouncements are stored in stream DEVICES first; then the generated
  service's durable pull consumer (`device-registry`, JETSTREAM_FETCH_BATCH) against a raw
  nats-py pull consumer with the same durable and batch size, each acking after its handler.
- latency: core NATS at 1,000 msg/s, send time in the subject (`sensors.temperature.t<ns>`).
- memory: VmRSS/VmHWM from /proc/<pid>/status idle, after the latency run, after a flood.

Subscribers alternate within each round and rounds repeat, so ratios hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.js.errors

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import _profile  # noqa: E402
from _common import (  # noqa: E402
    EXAMPLES,
    REPO,
    NatsServer,
    median,
    percentile,
    proc_status,
    stop_process,
    table,
)
from mqtt_throughput import profile_report  # noqa: E402

PYTHON = sys.executable
PACKAGE = "iot_device_management_nats"
SUBJECT = "sensors.temperature.sensor001"
PROBE_SUBJECT = "sensors.temperature.probe"
JS_SUBJECT = "devices.announce"
STREAM = "DEVICES"
READING = json.dumps(
    {"deviceId": "sensor001", "value": 22.4, "timestamp": "2024-01-15T10:30:00Z"},
    separators=(",", ":"),
).encode()
ANNOUNCEMENT = json.dumps(
    {
        "deviceId": "sensor001",
        "deviceType": "sensor",
        "capabilities": ["temperature", "humidity"],
        "firmwareVersion": "2.1.0",
        "metadata": {"location": "building-a/floor-1", "model": "TH-200"},
        "announcedAt": "2024-01-15T10:00:00Z",
    },
    separators=(",", ":"),
).encode()

READING_HANDLER = '''"""Benchmark handler (bench/_sink.py): counts, times."""

from __future__ import annotations

from _sink import SINK

from {package}._generated import models
from {package}._generated.channels import TemperatureReadingsParams
from {package}._generated.handlers import MessageContext


async def handle(
    message: models.TemperatureReading,
    params: TemperatureReadingsParams,
    context: MessageContext,
) -> None:
    SINK.record(context.subject)
'''

ANNOUNCEMENT_HANDLER = '''"""Benchmark handler (bench/_sink.py): counts, times."""

from __future__ import annotations

from _sink import SINK

from {package}._generated import models
from {package}._generated.handlers import MessageContext


async def handle(message: models.DeviceAnnouncement, context: MessageContext) -> None:
    SINK.record(context.subject)
'''

IMPLS = ("raw", "generated")
TARGET_RATIO = 0.8


def generate_project(work: Path) -> Path:
    project = work / "generated"
    env = {**os.environ, "ASYNCGEN_CACHE_DIR": str(work / "cache")}
    subprocess.run(
        [
            PYTHON,
            "-m",
            "asyncgen",
            "generate",
            str(EXAMPLES / "nats" / "asyncapi.yaml"),
            "-o",
            str(project),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    handlers = project / "src" / PACKAGE / "handlers"
    (handlers / "receive_temperature_reading.py").write_text(
        READING_HANDLER.format(package=PACKAGE)
    )
    (handlers / "receive_device_announcement.py").write_text(
        ANNOUNCEMENT_HANDLER.format(package=PACKAGE)
    )
    return project


@dataclass
class Subscriber:
    impl: str
    process: subprocess.Popen[bytes]
    out: Path
    log: Path

    async def wait_result(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.out.exists():
                return json.loads(self.out.read_text())  # type: ignore[no-any-return]
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.02)
        return None

    def memory(self) -> dict[str, float]:
        return proc_status(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process, timeout=40)


class Bench:
    def __init__(self, work: Path, server: NatsServer, project: Path, batch: int) -> None:
        self.work = work
        self.server = server
        self.project = project
        self.batch = batch
        self._runs = 0
        self.nc: Any = None

    async def open(self) -> None:
        self.nc = await nats.connect(self.server.url, name="bench-driver")

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    async def start(
        self,
        impl: str,
        mode: str,
        count: int,
        warmup: int,
        sink_mode: str = "throughput",
        profile_to: Path | None = None,
        probe: bool = True,
    ) -> Subscriber:
        self._runs += 1
        out = self.work / f"result-{self._runs}.json"
        log = self.work / f"subscriber-{self._runs}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.project / "src"), str(BENCH)]),
            "NATS_URL": self.server.url,
            "LOG_LEVEL": "WARNING",
            "STATS_INTERVAL": "0",
            "JETSTREAM_FETCH_BATCH": str(self.batch),
            "BENCH_BATCH": str(self.batch),
            "BENCH_COUNT": str(count),
            "BENCH_WARMUP": str(warmup),
            "BENCH_OUT": str(out),
            "BENCH_MODE": sink_mode,
        }
        if impl == "generated":
            argv = [PYTHON, "-m", PACKAGE]
            if profile_to is not None:
                argv = [PYTHON, "-m", "cProfile", "-o", str(profile_to), "-m", PACKAGE]
        else:
            argv = [PYTHON, str(BENCH / "_raw_nats.py"), mode]
        process = subprocess.Popen(
            argv, cwd=self.project, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        subscriber = Subscriber(impl, process, out, log)
        if probe:
            ready = Path(str(out) + ".ready")
            deadline = time.monotonic() + 30
            while not ready.exists():
                if time.monotonic() > deadline or process.poll() is not None:
                    subscriber.stop()
                    raise SystemExit(f"{impl} did not come up:\n{log.read_text()[-3000:]}")
                await self.nc.publish(PROBE_SUBJECT, READING)
                await asyncio.sleep(0.1)
        return subscriber

    async def core_flood(
        self,
        impl: str,
        payload_file: Path,
        count: int,
        warmup: int,
        timeout: float,
        profile_to: Path | None = None,
        spy_to: Path | None = None,
    ) -> dict[str, Any]:
        subscriber = await self.start(impl, "core", count, warmup, profile_to=profile_to)
        spy = None
        try:
            await asyncio.sleep(0.5)
            idle = subscriber.memory()
            if spy_to is not None:
                spy = _profile.start(subscriber.process.pid, spy_to)
                await asyncio.sleep(1.0)
            publisher = await asyncio.create_subprocess_exec(
                PYTHON,
                str(BENCH / "_nats_pub.py"),
                self.server.url,
                SUBJECT,
                str(count),
                str(payload_file),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            result = await subscriber.wait_result(timeout)
            if spy is not None:
                _profile.stop(spy)
            loaded = subscriber.memory()
            try:
                output, _ = await asyncio.wait_for(publisher.communicate(), 30)
                published = json.loads(output)
            except (TimeoutError, ValueError):
                with_kill(publisher)
                published = {"rate": float("nan")}
        finally:
            if spy is not None:
                _profile.stop(spy)
            subscriber.stop()
        return {
            "ok": result is not None,
            "rate": (result["measured"] / result["seconds"]) if result else float("nan"),
            "cpu_us": (result["cpu_seconds"] / result["measured"] * 1e6)
            if result
            else float("nan"),
            "publisher_rate": published["rate"],
            "idle": idle,
            "loaded": loaded,
        }

    async def reset_stream(self, count: int) -> None:
        """Stream DEVICES holding `count` announcements and no consumer."""
        js = self.nc.jetstream()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(STREAM)
        await js.add_stream(name=STREAM, subjects=[JS_SUBJECT])
        for index in range(count):
            await self.nc.publish(JS_SUBJECT, ANNOUNCEMENT)
            if index % 1000 == 999:
                await self.nc.flush(timeout=30)
        await self.nc.flush(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = await js.stream_info(STREAM)
            if info.state.messages >= count:
                return
            await asyncio.sleep(0.05)
        raise SystemExit(f"stream {STREAM} holds {info.state.messages} of {count} messages")

    async def jetstream(
        self,
        impl: str,
        count: int,
        warmup: int,
        timeout: float,
        profile_to: Path | None = None,
        spy_to: Path | None = None,
    ) -> dict[str, Any]:
        await self.reset_stream(count)
        subscriber = await self.start(
            impl, "jetstream", count, warmup, profile_to=profile_to, probe=False
        )
        spy = None
        if spy_to is not None:
            # Once the interpreter is up (py-spy cannot attach earlier), while it still
            # imports (import stacks are left out of the report; connecting is not).
            await asyncio.sleep(0.2)
            spy = _profile.start(subscriber.process.pid, spy_to)
        try:
            result = await subscriber.wait_result(timeout)
            if spy is not None:
                _profile.stop(spy)
            loaded = subscriber.memory()
        finally:
            if spy is not None:
                _profile.stop(spy)
            subscriber.stop()
        return {
            "ok": result is not None,
            "rate": (result["measured"] / result["seconds"]) if result else float("nan"),
            "cpu_us": (result["cpu_seconds"] / result["measured"] * 1e6)
            if result
            else float("nan"),
            "loaded": loaded,
        }

    async def latency(self, impl: str, rate: int, seconds: float) -> dict[str, Any]:
        count = int(rate * seconds)
        subscriber = await self.start(impl, "core", count, 1, sink_mode="latency")
        try:
            await asyncio.sleep(0.5)
            start = time.monotonic()
            for index in range(count):
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.nc.publish(f"sensors.temperature.t{time.monotonic_ns()}", READING)
            sent_rate = count / (time.monotonic() - start)
            result = await subscriber.wait_result(10 + seconds)
            loaded = subscriber.memory()
        finally:
            subscriber.stop()
        if result is None:
            return {"ok": False, "loaded": loaded}
        latencies = [value / 1e6 for value in result["latencies_ns"]]
        steady = latencies[len(latencies) // 10 :]
        return {
            "ok": True,
            "p50": percentile(steady, 0.5),
            "p99": percentile(steady, 0.99),
            "max": max(steady),
            "sent_rate": sent_rate,
            "loaded": loaded,
        }


def with_kill(process: Any) -> None:
    if process.returncode is None:
        process.kill()


async def wait_for_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return path.exists()


async def run(args: argparse.Namespace) -> None:
    count = args.count or (10_000 if args.quick else 40_000)
    js_count = args.js_count or (5_000 if args.quick else 20_000)
    rounds = args.rounds or (2 if args.quick else 3)
    warmup = min(2000, count // 10)
    js_warmup = min(1000, js_count // 10)
    latency_seconds = 2.0 if args.quick else 3.0
    timeout = 120.0
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}  python {sys.version.split()[0]}  "
        f"{os.cpu_count()} CPUs  asyncgen at {commit or '?'}  core: {count:,} msgs "
        f"({len(READING)} B), JetStream: {js_count:,} msgs ({len(ANNOUNCEMENT)} B), batch "
        f"{args.batch}, {rounds} rounds"
    )
    started = time.perf_counter()
    rates: dict[tuple[str, str], list[float]] = defaultdict(list)
    cpu_us: dict[tuple[str, str], list[float]] = defaultdict(list)
    paired: dict[str, list[float]] = defaultdict(list)
    publisher_rates: list[float] = []
    idle: dict[str, list[float]] = defaultdict(list)
    flood_hwm: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    latencies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    profile_text = ""
    with tempfile.TemporaryDirectory(prefix="asyncgen-bench-nats-") as temp:
        work = Path(temp)
        project = generate_project(work)
        payload_file = work / "reading.json"
        payload_file.write_bytes(READING)
        server = NatsServer(work / "nats")
        server.start()
        bench = Bench(work, server, project, args.batch)
        try:
            await bench.open()
            for index in range(rounds):
                order = IMPLS if index % 2 == 0 else IMPLS[::-1]
                this_round: dict[tuple[str, str], float] = {}
                for impl in order:
                    outcome = await bench.core_flood(impl, payload_file, count, warmup, timeout)
                    if not outcome["ok"]:
                        failures.append(f"core {impl} round {index + 1}: fewer than {count}")
                        continue
                    rates[(impl, "core")].append(outcome["rate"])
                    cpu_us[(impl, "core")].append(outcome["cpu_us"])
                    this_round[(impl, "core")] = outcome["rate"]
                    publisher_rates.append(outcome["publisher_rate"])
                    idle[impl].append(outcome["idle"].get("VmRSS", 0.0))
                    flood_hwm[impl].append(outcome["loaded"].get("VmHWM", 0.0))
                for impl in order:
                    outcome = await bench.jetstream(impl, js_count, js_warmup, timeout)
                    if not outcome["ok"]:
                        failures.append(
                            f"JetStream {impl} round {index + 1}: fewer than {js_count}"
                        )
                        continue
                    rates[(impl, "jetstream")].append(outcome["rate"])
                    cpu_us[(impl, "jetstream")].append(outcome["cpu_us"])
                    this_round[(impl, "jetstream")] = outcome["rate"]
                for kind in ("core", "jetstream"):
                    if ("raw", kind) in this_round and ("generated", kind) in this_round:
                        paired[kind].append(
                            this_round[("generated", kind)] / this_round[("raw", kind)]
                        )
                print(f"  ... round {index + 1}/{rounds} done", file=sys.stderr, flush=True)
            for index in range(rounds):
                for impl in IMPLS if index % 2 == 0 else IMPLS[::-1]:
                    latencies[impl].append(await bench.latency(impl, args.rate, latency_seconds))
            if args.profile and _profile.available():
                parts = []
                for impl in IMPLS[::-1]:
                    spy_file = work / f"spy-core-{impl}.txt"
                    await bench.core_flood(
                        impl, payload_file, count, warmup, timeout, spy_to=spy_file
                    )
                    text = _profile.report(
                        spy_file,
                        count,
                        args.top,
                        f"{impl} subscriber, core NATS flood",
                        1e6 / median(rates[(impl, "core")]),
                    )
                    parts.append(
                        text if impl == "generated" else "\n\n".join(text.split("\n\n")[:2])
                    )
                for impl in IMPLS[::-1]:
                    spy_file = work / f"spy-js-{impl}.txt"
                    await bench.jetstream(impl, js_count, js_warmup, timeout, spy_to=spy_file)
                    text = _profile.report(
                        spy_file,
                        js_count,
                        args.top,
                        f"{impl} subscriber, JetStream consumption",
                        1e6 / median(rates[(impl, "jetstream")]),
                    )
                    parts.append(
                        text if impl == "generated" else "\n\n".join(text.split("\n\n")[:2])
                    )
                profile_text = "\n\n".join(parts)
            elif args.profile:
                parts = []
                core_profile = work / "core.prof"
                await bench.core_flood(
                    "generated", payload_file, count, warmup, timeout * 3, profile_to=core_profile
                )
                if await wait_for_file(core_profile, 30):
                    parts.append(profile_report(core_profile, count, args.top))
                js_profile = work / "js.prof"
                await bench.jetstream("generated", js_count, js_warmup, timeout * 3, js_profile)
                if await wait_for_file(js_profile, 30):
                    parts.append(
                        profile_report(js_profile, js_count, args.top).replace(
                            "QoS 1 flood", "JetStream consumption"
                        )
                    )
                profile_text = (
                    "\n\n".join(parts).replace("QoS 1 flood", "core NATS flood")
                    or "(profile not written)"
                )
        finally:
            await bench.close()
            server.stop()

    print()
    rows = []
    labels = (("core", "core NATS"), ("jetstream", f"JetStream, batch {args.batch}"))
    for kind, label in labels:
        raw = median(rates[("raw", kind)])
        gen = median(rates[("generated", kind)])
        ratio = gen / raw if raw else float("nan")
        verdict = (
            "met"
            if ratio >= TARGET_RATIO
            else f"MISSED by {(TARGET_RATIO - ratio) * 100:.0f} points"
        )
        raw_cpu = median(cpu_us[("raw", kind)])
        gen_cpu = median(cpu_us[("generated", kind)])
        rows.append(
            [
                label,
                f"{raw:,.0f}",
                f"{gen:,.0f}",
                f"{ratio:.2f}x",
                f"{median(paired[kind]):.2f}x",
                f">= {TARGET_RATIO}x: {verdict}",
                f"{median(publisher_rates):,.0f}" if kind == "core" else "(stored first)",
                f"{raw_cpu:.1f}",
                f"{gen_cpu:.1f}",
                f"{raw_cpu / gen_cpu:.2f}x",
            ]
        )
    print(
        table(
            [
                "path",
                "raw msg/s",
                "generated msg/s",
                "gen/raw",
                "paired",
                "target",
                "publisher msg/s",
                "raw CPU us/msg",
                "gen CPU us/msg",
                "CPU raw/gen",
            ],
            rows,
            title=f"throughput, median of {rounds} rounds (core: msgs {warmup:,}..{count:,} "
            f"timed; JetStream: {js_warmup:,}..{js_count:,}). paired = median of generated/raw "
            "within a round; CPU = the subscriber process's CPU time per message",
        )
    )
    print(
        "runs (msg/s): "
        + "; ".join(
            f"{impl} {kind}: " + " ".join(f"{rate:,.0f}" for rate in values)
            for (impl, kind), values in sorted(rates.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        )
        + "; publisher: "
        + " ".join(f"{rate:,.0f}" for rate in publisher_rates)
    )
    print()
    rows = []
    for impl in IMPLS:
        results = [r for r in latencies[impl] if r["ok"]]
        if not results:
            rows.append([impl, "FAILED", "-", "-", "-", "-"])
            continue
        rows.append(
            [
                impl,
                f"{median([r['p50'] for r in results]):.2f}",
                f"{median([r['p99'] for r in results]):.2f}",
                " ".join(f"{r['p99']:.1f}" for r in results),
                f"{max(r['max'] for r in results):.1f}",
                f"{median([r['sent_rate'] for r in results]):,.0f}",
            ]
        )
    print(
        table(
            ["subscriber", "p50 ms", "p99 ms", "p99 per run", "max ms", "sent msg/s"],
            rows,
            title=f"core NATS latency at {args.rate:,} msg/s, {latency_seconds:.0f} s per run, "
            f"median of {rounds} runs "
            "(send time in the subject; first tenth dropped as warm-up)",
        )
    )
    print()
    rows = []
    for impl in IMPLS:
        steady = max((r["loaded"].get("VmHWM", 0.0) for r in latencies[impl]), default=None)
        rows.append(
            [
                impl,
                f"{median(idle[impl]):.1f}",
                "-" if steady is None else f"{steady:.1f}",
                f"{max(flood_hwm[impl]):.1f}" if flood_hwm[impl] else "-",
            ]
        )
    print(
        table(
            ["subscriber", "idle VmRSS MiB", f"peak at {args.rate:,}/s MiB", "peak in flood MiB"],
            rows,
            title="memory (/proc/<pid>/status)",
        )
    )
    for failure in failures:
        print(f"FAILED: {failure}")
    if profile_text:
        print()
        print(profile_text)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    parser.add_argument("--count", type=int, help="core NATS messages per flood (40,000)")
    parser.add_argument("--js-count", type=int, help="JetStream messages per run (20,000)")
    parser.add_argument("--batch", type=int, default=10, help="JetStream fetch batch (10)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--rate", type=int, default=1000, help="msg/s of the latency run")
    parser.add_argument("--profile", action="store_true", help="also cProfile the service")
    parser.add_argument("--top", type=int, default=20, help="functions in the profile")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
