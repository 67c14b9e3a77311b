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
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import nats
import nats.js.errors

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _profile
from _common import (
    BENCH,
    PYTHON,
    Collected,
    NatsServer,
    Subscriber,
    SubscriberRuns,
    add_profile_options,
    generate_example,
    latency_cells,
    latency_figures,
    median,
    run_header,
    table,
    throughput,
)

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


class Bench:
    def __init__(self, work: Path, server: NatsServer, project: Path, batch: int) -> None:
        self.work = work
        self.server = server
        self.project = project
        self.batch = batch
        self.subscribers = SubscriberRuns(work, project, PACKAGE, stop_timeout=40)
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
        subscriber = self.subscribers.spawn(
            impl,
            [PYTHON, str(BENCH / "_raw_nats.py"), mode],
            {
                "NATS_URL": self.server.url,
                "JETSTREAM_FETCH_BATCH": str(self.batch),
                "BENCH_BATCH": str(self.batch),
            },
            count=count,
            warmup=warmup,
            mode=sink_mode,
            profile_to=profile_to,
        )
        if probe:
            deadline = time.monotonic() + 30
            while not subscriber.ready(deadline):
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
            result = await subscriber.wait_result_async(timeout)
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
            **throughput(result),
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
            result = await subscriber.wait_result_async(timeout)
            if spy is not None:
                _profile.stop(spy)
            loaded = subscriber.memory()
        finally:
            if spy is not None:
                _profile.stop(spy)
            subscriber.stop()
        return {
            "ok": result is not None,
            **throughput(result),
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
            result = await subscriber.wait_result_async(10 + seconds)
            loaded = subscriber.memory()
        finally:
            subscriber.stop()
        if result is None:
            return {"ok": False, "loaded": loaded}
        return {
            "ok": True,
            **latency_figures(result),
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
    print(
        run_header(
            f"core: {count:,} msgs ({len(READING)} B), JetStream: {js_count:,} msgs "
            f"({len(ANNOUNCEMENT)} B), batch {args.batch}, {rounds} rounds"
        )
    )
    started = time.perf_counter()
    collected = Collected()
    publisher_rates: list[float] = []
    latencies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    profile_text = ""
    with tempfile.TemporaryDirectory(prefix="asyncgen-bench-nats-") as temp:
        work = Path(temp)
        handlers = f"{PACKAGE}/handlers"
        project = generate_example(
            "nats",
            work,
            {
                f"{handlers}/receive_temperature_reading.py": READING_HANDLER.format(
                    package=PACKAGE
                ),
                f"{handlers}/receive_device_announcement.py": ANNOUNCEMENT_HANDLER.format(
                    package=PACKAGE
                ),
            },
        )
        payload_file = work / "reading.json"
        payload_file.write_bytes(READING)
        server = NatsServer(work / "nats")
        server.start()
        bench = Bench(work, server, project, args.batch)
        try:
            await bench.open()
            for index in range(rounds):
                order = IMPLS if index % 2 == 0 else IMPLS[::-1]
                core_round: dict[str, float] = {}
                for impl in order:
                    outcome = await bench.core_flood(impl, payload_file, count, warmup, timeout)
                    if not outcome["ok"]:
                        collected.failures.append(
                            f"core {impl} round {index + 1}: fewer than {count}"
                        )
                        continue
                    collected.add(impl, "core", outcome, core_round)
                    publisher_rates.append(outcome["publisher_rate"])
                js_round: dict[str, float] = {}
                for impl in order:
                    outcome = await bench.jetstream(impl, js_count, js_warmup, timeout)
                    if not outcome["ok"]:
                        collected.failures.append(
                            f"JetStream {impl} round {index + 1}: fewer than {js_count}"
                        )
                        continue
                    collected.add(impl, "jetstream", outcome, js_round)
                collected.pair("core", core_round)
                collected.pair("jetstream", js_round)
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
                    measured = median(collected.rates[(impl, "core")])
                    parts.append(
                        _profile.subscriber_report(
                            spy_file, count, args.top, impl, "core NATS flood", measured
                        )
                    )
                for impl in IMPLS[::-1]:
                    spy_file = work / f"spy-js-{impl}.txt"
                    await bench.jetstream(impl, js_count, js_warmup, timeout, spy_to=spy_file)
                    measured = median(collected.rates[(impl, "jetstream")])
                    parts.append(
                        _profile.subscriber_report(
                            spy_file, js_count, args.top, impl, "JetStream consumption", measured
                        )
                    )
                profile_text = "\n\n".join(parts)
            elif args.profile:
                parts = []
                core_profile = work / "core.prof"
                await bench.core_flood(
                    "generated", payload_file, count, warmup, timeout * 3, profile_to=core_profile
                )
                if await wait_for_file(core_profile, 30):
                    parts.append(_profile.profile_report(core_profile, count, args.top))
                js_profile = work / "js.prof"
                await bench.jetstream("generated", js_count, js_warmup, timeout * 3, js_profile)
                if await wait_for_file(js_profile, 30):
                    parts.append(
                        _profile.profile_report(js_profile, js_count, args.top).replace(
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
        raw = median(collected.rates[("raw", kind)])
        gen = median(collected.rates[("generated", kind)])
        ratio = gen / raw if raw else float("nan")
        verdict = (
            "met"
            if ratio >= TARGET_RATIO
            else f"MISSED by {(TARGET_RATIO - ratio) * 100:.0f} points"
        )
        raw_cpu = median(collected.cpu_us[("raw", kind)])
        gen_cpu = median(collected.cpu_us[("generated", kind)])
        rows.append(
            [
                label,
                f"{raw:,.0f}",
                f"{gen:,.0f}",
                f"{ratio:.2f}x",
                f"{median(collected.paired[kind]):.2f}x",
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
        collected.runs_line()
        + "; publisher: "
        + " ".join(f"{rate:,.0f}" for rate in publisher_rates)
    )
    print()
    rows = []
    for impl in IMPLS:
        rows.append([impl, *latency_cells(latencies[impl])])
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
                f"{median(collected.idle[impl]):.1f}",
                "-" if steady is None else f"{steady:.1f}",
                f"{max(collected.flood_hwm[impl]):.1f}" if collected.flood_hwm[impl] else "-",
            ]
        )
    print(
        table(
            ["subscriber", "idle VmRSS MiB", f"peak at {args.rate:,}/s MiB", "peak in flood MiB"],
            rows,
            title="memory (/proc/<pid>/status)",
        )
    )
    for failure in collected.failures:
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
    add_profile_options(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
