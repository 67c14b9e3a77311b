"""The generated MQTT service against a raw aiomqtt loop doing the same work.

    python bench/mqtt_throughput.py            # ~2.5 minutes
    python bench/mqtt_throughput.py --quick    # ~40 s
    python bench/mqtt_throughput.py --profile  # + where the subscribers' time goes (py-spy,
                                               #   else cProfile of the generated service)

Both subscribers run on the same mosquitto (started here on a free loopback port), receive
the same payload (the spec's `fullReading` TelemetryData example) on
`devices/sensor001/telemetry`, validate it with `TypeAdapter(TelemetryPayload)` and call the
same trivial handler (bench/_sink.py). The generated service is generated into a temporary
folder from examples/mqtt/asyncapi.yaml with its `receive_telemetry` handler replaced.

- throughput: `mosquitto_pub -l` (C) floods N messages at QoS 0 and QoS 1; the subscriber
  times message WARMUP to N. The two subscribers alternate within each round, and the
  rounds repeat, so the ratio holds on a noisy machine. `mosquitto_sub -C N` (C) is the
  ceiling of publisher plus broker.
- latency: a paho publisher sends 1,000 msg/s with its send time in the topic
  (`devices/t<monotonic ns>/telemetry`); the handler takes the difference.
- memory: VmRSS/VmHWM from /proc/<pid>/status once subscribed and idle, after the
  latency run (steady load) and after the flood (peak: a subscriber slower than the
  publisher buffers the backlog).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import _profile  # noqa: E402
from _common import (  # noqa: E402
    EXAMPLES,
    REPO,
    Mosquitto,
    binary,
    median,
    percentile,
    proc_status,
    stop_process,
    table,
)

PYTHON = sys.executable
PACKAGE = "iot_device_management"
TOPIC = "devices/sensor001/telemetry"
PROBE_TOPIC = "devices/probe/telemetry"
PAYLOAD = json.dumps(
    {
        "deviceId": "sensor001",
        "timestamp": "2024-01-15T10:30:00Z",
        "sensors": {"temperature": 23.5, "humidity": 65.2, "pressure": 1013.25, "battery": 87.3},
        "location": {"latitude": 37.7749, "longitude": -122.4194, "altitude": 16.0},
        "metadata": {
            "firmwareVersion": "2.1.0",
            "model": "TH-200",
            "manufacturer": "Acme Sensors",
            "serialNumber": "SN-000123",
        },
    },
    separators=(",", ":"),
)

HANDLER = '''"""Benchmark handler (bench/_sink.py): counts, times."""

from __future__ import annotations

from _sink import SINK

from {package}._generated import models
from {package}._generated.channels import DeviceTelemetryParams
from {package}._generated.handlers import MessageContext


async def handle(
    message: models.TelemetryPayload,
    params: DeviceTelemetryParams,
    context: MessageContext,
) -> None:
    SINK.record(context.topic)
'''

IMPLS = ("raw", "generated")
TARGET_RATIO = 0.9
TARGET_IDLE_MIB = 60.0


def generate_project(work: Path) -> Path:
    project = work / "generated"
    env = {**os.environ, "ASYNCGEN_CACHE_DIR": str(work / "cache")}
    subprocess.run(
        [
            PYTHON,
            "-m",
            "asyncgen",
            "generate",
            str(EXAMPLES / "mqtt" / "asyncapi.yaml"),
            "-o",
            str(project),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    handler = project / "src" / PACKAGE / "handlers" / "receive_telemetry.py"
    handler.write_text(HANDLER.format(package=PACKAGE))
    return project


@dataclass
class Subscriber:
    impl: str
    process: subprocess.Popen[bytes]
    out: Path
    log: Path

    def wait_result(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.out.exists():
                return json.loads(self.out.read_text())  # type: ignore[no-any-return]
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        return None

    def memory(self) -> dict[str, float]:
        return proc_status(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)


class Bench:
    def __init__(self, work: Path, broker: Mosquitto, project: Path, profile: bool) -> None:
        self.work = work
        self.broker = broker
        self.project = project
        self.profile = profile
        self._runs = 0
        self.probe = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-probe")  # type: ignore[attr-defined]
        self.probe.connect("127.0.0.1", broker.port)
        self.probe.loop_start()

    def close(self) -> None:
        self.probe.loop_stop()
        self.probe.disconnect()

    def start(
        self, impl: str, count: int, warmup: int, mode: str, profile_to: Path | None = None
    ) -> Subscriber:
        self._runs += 1
        out = self.work / f"result-{self._runs}.json"
        log = self.work / f"subscriber-{self._runs}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.project / "src"), str(BENCH)]),
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(self.broker.port),
            "MQTT_CLIENT_ID": f"bench-{impl}-{uuid.uuid4().hex[:8]}",
            "MQTT_CLEAN_SESSION": "true",
            "LOG_LEVEL": "WARNING",
            "STATS_INTERVAL": "0",
            "BENCH_COUNT": str(count),
            "BENCH_WARMUP": str(warmup),
            "BENCH_OUT": str(out),
            "BENCH_MODE": mode,
        }
        if impl == "raw-ack":
            env["BENCH_MANUAL_ACK"] = "1"
        if impl == "generated":
            argv = [PYTHON, "-m", PACKAGE]
            if profile_to is not None:
                argv = [PYTHON, "-m", "cProfile", "-o", str(profile_to), "-m", PACKAGE]
        else:
            argv = [PYTHON, str(BENCH / "_raw_mqtt.py")]
        process = subprocess.Popen(
            argv, cwd=self.project, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        subscriber = Subscriber(impl, process, out, log)
        ready = Path(str(out) + ".ready")
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                subscriber.stop()
                raise SystemExit(f"{impl} subscriber did not come up:\n{log.read_text()[-3000:]}")
            self.probe.publish(PROBE_TOPIC, PAYLOAD, qos=0)
            time.sleep(0.1)
        return subscriber

    def flood(
        self,
        impl: str,
        qos: int,
        lines: Path,
        count: int,
        warmup: int,
        timeout: float,
        profile_to: Path | None = None,
        spy_to: Path | None = None,
    ) -> dict[str, Any]:
        subscriber = self.start(impl, count, warmup, "throughput", profile_to)
        spy = None
        try:
            time.sleep(0.5)
            idle = subscriber.memory()
            if spy_to is not None:
                spy = _profile.start(subscriber.process.pid, spy_to)
                time.sleep(1.0)  # attached before the first message
            started = time.perf_counter()
            with lines.open("rb") as stdin:
                publisher = subprocess.Popen(
                    [
                        binary("mosquitto_pub"),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(self.broker.port),
                        "-t",
                        TOPIC,
                        "-q",
                        str(qos),
                        "-l",
                        "-i",
                        f"bench-pub-{self._runs}",
                    ],
                    stdin=stdin,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            result = subscriber.wait_result(timeout)
            elapsed = time.perf_counter() - started
            if spy is not None:
                _profile.stop(spy)
            loaded = subscriber.memory()
            try:
                publisher.wait(max(1.0, timeout - elapsed))
                published_in = time.perf_counter() - started
            except subprocess.TimeoutExpired:
                publisher.kill()
                publisher.wait()
                published_in = float("nan")
        finally:
            if spy is not None:
                _profile.stop(spy)
            subscriber.stop()
        if result is None:
            return {"ok": False, "idle": idle, "loaded": loaded, "log": subscriber.log}
        return {
            "ok": True,
            "rate": float(result["measured"]) / float(result["seconds"]),
            "cpu_us": float(result["cpu_seconds"]) / float(result["measured"]) * 1e6,
            "idle": idle,
            "loaded": loaded,
            "published_in": published_in,
            "received_in": elapsed,
        }

    def latency(self, impl: str, qos: int, rate: int, seconds: float) -> dict[str, Any]:
        count = int(rate * seconds)
        subscriber = self.start(impl, count, 1, "latency")
        try:
            time.sleep(0.5)
            idle = subscriber.memory()
            start = time.monotonic()
            for index in range(count):
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                topic = f"devices/t{time.monotonic_ns()}/telemetry"
                self.probe.publish(topic, PAYLOAD, qos=qos)
            result = subscriber.wait_result(10 + seconds)
            loaded = subscriber.memory()
        finally:
            subscriber.stop()
        if result is None:
            return {"ok": False, "idle": idle, "loaded": loaded}
        latencies = [value / 1e6 for value in result["latencies_ns"]]
        steady = latencies[len(latencies) // 10 :]  # the first tenth is warm-up
        return {
            "ok": True,
            "p50": percentile(steady, 0.50),
            "p99": percentile(steady, 0.99),
            "max": max(steady),
            "sent_rate": count / (time.monotonic() - start),
            "idle": idle,
            "loaded": loaded,
        }

    def ceiling(self, qos: int, lines: Path, count: int, timeout: float) -> float:
        """Messages per second from `mosquitto_pub -l` through mosquitto to `mosquitto_sub`."""
        subscriber = subprocess.Popen(
            [
                binary("mosquitto_sub"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.broker.port),
                "-t",
                TOPIC,
                "-q",
                "1",
                "-C",
                str(count),
                "-i",
                f"bench-csub-{qos}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        started = time.perf_counter()
        with lines.open("rb") as stdin:
            publisher = subprocess.Popen(
                [
                    binary("mosquitto_pub"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.broker.port),
                    "-t",
                    TOPIC,
                    "-q",
                    str(qos),
                    "-l",
                    "-i",
                    f"bench-cpub-{qos}",
                ],
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        try:
            subscriber.wait(timeout)
            rate = count / (time.perf_counter() - started)
        except subprocess.TimeoutExpired:
            rate = float("nan")
        finally:
            stop_process(subscriber)
            try:
                publisher.wait(10)
            except subprocess.TimeoutExpired:
                publisher.kill()
                publisher.wait()
        return rate


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@dataclass
class Collected:
    rates: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu_us: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    #: generated/raw of the runs next to each other in the same round
    paired: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    idle: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    flood_hwm: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    parser.add_argument("--count", type=int, help="messages per flood (default 20,000)")
    parser.add_argument("--rounds", type=int, help="rounds of floods (default 3)")
    parser.add_argument("--rate", type=int, default=1000, help="msg/s of the latency runs")
    parser.add_argument(
        "--broker-inflight",
        type=int,
        metavar="N",
        help="mosquitto's max_inflight_messages (QoS 1 messages sent to a client before "
        "its acks; mosquitto's default 20, 0 = no limit)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile the service")
    parser.add_argument("--top", type=int, default=20, help="functions in the profile")
    args = parser.parse_args()
    count = args.count or (10_000 if args.quick else 20_000)
    rounds = args.rounds or (2 if args.quick else 3)
    warmup = min(2000, count // 10)
    latency_seconds = 2.0 if args.quick else 3.0
    flood_timeout = 120.0

    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}  python {sys.version.split()[0]}  "
        f"{os.cpu_count()} CPUs  asyncgen at {commit or '?'}  "
        f"{count:,} msgs/flood x {rounds} rounds, payload {len(PAYLOAD)} B, mosquitto "
        f"max_inflight_messages {20 if args.broker_inflight is None else args.broker_inflight}"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncgen-bench-mqtt-") as temp:
        work = Path(temp)
        project = generate_project(work)
        lines = work / "payloads.txt"
        lines.write_text((PAYLOAD + "\n") * count)
        broker = Mosquitto(
            work / "mosquitto",
            f"max_inflight_messages {args.broker_inflight}\n"
            if args.broker_inflight is not None
            else "",
        )
        broker.start()
        bench = Bench(work, broker, project, args.profile)
        collected = Collected()
        try:
            ceilings = {qos: bench.ceiling(qos, lines, count, flood_timeout) for qos in (0, 1)}
            for index in range(rounds):
                for qos in (0, 1):
                    impls = IMPLS if qos == 0 else ("raw", "raw-ack", "generated")
                    order = impls if index % 2 == 0 else impls[::-1]
                    this_round: dict[str, float] = {}
                    for impl in order:
                        outcome = bench.flood(impl, qos, lines, count, warmup, flood_timeout)
                        if not outcome["ok"]:
                            collected.failures.append(
                                f"{impl} QoS {qos} round {index + 1}: did not get {count} "
                                f"messages in {flood_timeout:.0f} s"
                            )
                            continue
                        collected.rates[(impl, qos)].append(outcome["rate"])
                        this_round[impl] = outcome["rate"]
                        collected.cpu_us[(impl, qos)].append(outcome["cpu_us"])
                        collected.idle[impl].append(outcome["idle"].get("VmRSS", 0.0))
                        collected.flood_hwm[impl].append(outcome["loaded"].get("VmHWM", 0.0))
                    if "raw" in this_round and "generated" in this_round:
                        collected.paired[qos].append(this_round["generated"] / this_round["raw"])
                print(f"  ... round {index + 1}/{rounds} done", file=sys.stderr, flush=True)
            latencies: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
            for index in range(rounds):
                for qos in (1, 0):
                    for impl in IMPLS if index % 2 == 0 else IMPLS[::-1]:
                        latencies[(impl, qos)].append(
                            bench.latency(impl, qos, args.rate, latency_seconds)
                        )
            profile_text = ""
            if args.profile and _profile.available():
                parts = []
                for impl, qos in (("generated", 1), ("raw-ack", 1), ("generated", 0), ("raw", 0)):
                    spy_file = work / f"spy-{impl}-{qos}.txt"
                    bench.flood(impl, qos, lines, count, warmup, flood_timeout, spy_to=spy_file)
                    measured = median(collected.rates[(impl, qos)])
                    text = _profile.report(
                        spy_file,
                        count,
                        args.top,
                        f"{impl} subscriber, QoS {qos} flood",
                        1e6 / measured,
                    )
                    if impl != "generated":  # the layers are enough to compare with
                        text = "\n\n".join(text.split("\n\n")[:2])
                    parts.append(text)
                profile_text = "\n\n".join(parts)
            elif args.profile:
                profile_file = work / "generated.prof"
                bench.flood("generated", 1, lines, count, warmup, flood_timeout * 3, profile_file)
                deadline = time.monotonic() + 30
                while not profile_file.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if profile_file.exists():
                    profile_text = profile_report(profile_file, count, args.top)
                else:
                    profile_text = "(profile not written)"
        finally:
            bench.close()
            broker.stop()

    # -- tables ------------------------------------------------------------------------
    print()
    rows = []
    for qos in (0, 1):
        raw = median(collected.rates[("raw", qos)])
        gen = median(collected.rates[("generated", qos)])
        ratio = gen / raw if raw else float("nan")
        paired = median(collected.paired[qos])
        raw_ack = median(collected.rates[("raw-ack", qos)]) if qos else float("nan")
        verdict = (
            "met"
            if ratio >= TARGET_RATIO
            else f"MISSED by {(TARGET_RATIO - ratio) * 100:.0f} points"
        )
        rows.append(
            [
                f"QoS {qos}",
                f"{ceilings[qos]:,.0f}",
                f"{raw:,.0f}",
                f"{raw_ack:,.0f}" if qos else "-",
                f"{gen:,.0f}",
                f"{ratio:.2f}x",
                f"{paired:.2f}x",
                f"{gen / raw_ack:.2f}x" if qos else "-",
                f">= {TARGET_RATIO}x: {verdict}",
            ]
        )
    print(
        table(
            [
                "flood",
                "C sub msg/s",
                "raw msg/s",
                "raw ack-after msg/s",
                "generated msg/s",
                "gen/raw",
                "paired",
                "gen/raw ack-after",
                "target (gen/raw)",
            ],
            rows,
            title=f"throughput: mosquitto_pub -l flood, msgs {warmup:,}..{count:,} timed, "
            f"median of {rounds}. C sub = mosquitto_sub, the publisher+broker ceiling; "
            "paired = median of generated/raw within a round; raw ack-after = the raw loop "
            "acking QoS 1 after its handler, as the generated service does",
        )
    )
    print(
        "runs (msg/s): "
        + "; ".join(
            f"{impl} QoS {qos}: " + " ".join(f"{rate:,.0f}" for rate in rates)
            for (impl, qos), rates in sorted(
                collected.rates.items(), key=lambda kv: (kv[0][1], kv[0][0])
            )
        )
    )
    print()
    rows = []
    for qos in (0, 1):
        cpu = {
            impl: median(collected.cpu_us[(impl, qos)]) for impl in ("raw", "raw-ack", "generated")
        }
        rows.append(
            [
                f"QoS {qos}",
                f"{cpu['raw']:.1f}",
                f"{cpu['raw-ack']:.1f}" if qos else "-",
                f"{cpu['generated']:.1f}",
                f"{cpu['raw'] / cpu['generated']:.2f}x",
                f"{cpu['generated'] - cpu['raw']:+.1f}",
            ]
        )
    print(
        table(
            [
                "flood",
                "raw CPU us/msg",
                "raw ack-after CPU us/msg",
                "generated CPU us/msg",
                "raw/gen",
                "generated extra us/msg",
            ],
            rows,
            title="CPU time of the subscriber process per message over the same window "
            "(less sensitive to other load than msg/s; median)",
        )
    )
    print()
    rows = []
    for qos in (1, 0):
        for impl in IMPLS:
            results = [r for r in latencies[(impl, qos)] if r["ok"]]
            if not results:
                rows.append([f"QoS {qos}", impl, "FAILED", "-", "-", "-", "-"])
                continue
            p99s = " ".join(f"{r['p99']:.1f}" for r in results)
            rows.append(
                [
                    f"QoS {qos}",
                    impl,
                    f"{median([r['p50'] for r in results]):.2f}",
                    f"{median([r['p99'] for r in results]):.2f}",
                    p99s,
                    f"{max(r['max'] for r in results):.1f}",
                    f"{median([r['sent_rate'] for r in results]):,.0f}",
                ]
            )
    print(
        table(
            ["latency", "subscriber", "p50 ms", "p99 ms", "p99 per run", "max ms", "sent msg/s"],
            rows,
            title=f"latency at {args.rate:,} msg/s, {latency_seconds:.0f} s per run, median of "
            f"{rounds} runs (paho publisher, "
            "send time in the topic; first tenth dropped as warm-up)",
        )
    )
    print()
    rows = []
    for impl in IMPLS:
        idle = median(collected.idle[impl])
        steady = max(
            (r["loaded"].get("VmHWM", 0.0) for r in latencies[(impl, 1)]),
            default=None,
        )
        flood = max(collected.flood_hwm[impl]) if collected.flood_hwm[impl] else None
        target = ""
        if impl == "generated":
            target = f"idle < {TARGET_IDLE_MIB:.0f} MiB: " + (
                "met" if idle < TARGET_IDLE_MIB else f"MISSED by {idle - TARGET_IDLE_MIB:.1f} MiB"
            )
        rows.append([impl, mib(idle), mib(steady), mib(flood), target])
    print(
        table(
            [
                "subscriber",
                "idle VmRSS MiB",
                f"peak at {args.rate:,}/s MiB",
                "peak in flood MiB",
                "target",
            ],
            rows,
            title="memory (/proc/<pid>/status): idle once subscribed; VmHWM after the QoS 1 "
            "latency run and the largest after a flood (backlog buffered by the subscriber)",
        )
    )
    for failure in collected.failures:
        print(f"FAILED: {failure}")
    if profile_text:
        print()
        print(profile_text)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
