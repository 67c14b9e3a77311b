"""The generated MQTT service on aiomqtt and on gmqtt against raw loops doing the same work.

    python bench/mqtt_throughput.py            # ~4.5 minutes on a loaded machine
    python bench/mqtt_throughput.py --quick    # fewer messages and rounds, no latency
    python bench/mqtt_throughput.py --subscribers gen-gmqtt,gen-gmqtt-uvloop
    python bench/mqtt_throughput.py --profile  # + where the subscribers' time goes (py-spy,
                                               #   else cProfile of the generated service)

Every subscriber (SUBSCRIBERS: mosquitto_sub, raw aiomqtt, raw aiomqtt acking after the
handler, raw gmqtt, the generated service on aiomqtt, on gmqtt and on gmqtt with uvloop)
runs on the same mosquitto (started here on a free loopback port), receives the same
payload (the spec's `fullReading` TelemetryData example) on `devices/sensor001/telemetry`,
validates it with `TypeAdapter(TelemetryPayload)` and calls the same trivial handler
(bench/_sink.py). The generated service is generated into a temporary folder from
examples/mqtt/asyncapi.yaml with its `receive_telemetry` handler replaced.

- throughput: `mosquitto_pub -l` (C) floods N messages at QoS 0 and QoS 1; the subscriber
  times message WARMUP to N. The subscribers alternate within each round, and the rounds
  repeat, so the ratios hold on a noisy machine. `mosquitto_sub -C N` (C) is the ceiling
  of publisher plus broker.
- ratios against the targets, and one JSON line per figure.
- latency: a paho publisher sends 1,000 msg/s with its send time in the topic
  (`devices/t<monotonic ns>/telemetry`); the handler takes the difference.
- memory: VmRSS/VmHWM from /proc/<pid>/status once subscribed and idle, and after the
  flood (peak: a subscriber slower than the publisher buffers the backlog).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _profile
from _common import (
    BENCH,
    PYTHON,
    Collected,
    Mosquitto,
    Subscriber,
    SubscriberRuns,
    add_profile_options,
    binary,
    generate_example,
    latency_cells,
    latency_figures,
    median,
    run_header,
    stop_process,
    table,
    throughput,
)

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

#: Each subscriber: (kind in the JSON lines, client library, event loop, acks after the
#: handler). "raw-aiomqtt-ack" is the raw aiomqtt loop with paho's manual acks, acking
#: each QoS 1 message after its handler as the generated service does.
SUBSCRIBERS: dict[str, tuple[str, str, str, bool]] = {
    "raw-aiomqtt": ("raw", "aiomqtt", "asyncio", False),
    "raw-aiomqtt-ack": ("raw", "aiomqtt", "asyncio", True),
    "raw-gmqtt": ("raw", "gmqtt", "asyncio", False),
    "gen-aiomqtt": ("generated", "aiomqtt", "asyncio", True),
    "gen-gmqtt": ("generated", "gmqtt", "asyncio", True),
    "gen-gmqtt-uvloop": ("generated", "gmqtt", "uvloop", True),
    # only with --subscribers
    "gen-aiomqtt-uvloop": ("generated", "aiomqtt", "uvloop", True),
}
#: The subscribers of each QoS (acking after the handler means nothing at QoS 0).
FLOODED = {
    0: ("raw-aiomqtt", "raw-gmqtt", "gen-aiomqtt", "gen-gmqtt", "gen-gmqtt-uvloop"),
    1: (
        "raw-aiomqtt",
        "raw-aiomqtt-ack",
        "raw-gmqtt",
        "gen-aiomqtt",
        "gen-gmqtt",
        "gen-gmqtt-uvloop",
    ),
}
LATENCY = ("gen-aiomqtt", "gen-gmqtt")
TARGET_GMQTT_RATE = 40_000.0
TARGET_GMQTT_RATIO = {0: 3.0, 1: 2.0}
TARGET_AIOMQTT_RATIO = 0.95
TARGET_IDLE_MIB = 60.0


def mosquitto_pub(port: int, qos: int, client_id: str, lines: Path) -> subprocess.Popen[bytes]:
    """`mosquitto_pub -l`: one message on TOPIC for each line of `lines`."""
    with lines.open("rb") as stdin:
        return subprocess.Popen(
            [
                binary("mosquitto_pub"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-t",
                TOPIC,
                "-q",
                str(qos),
                "-l",
                "-i",
                client_id,
            ],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


class Bench:
    def __init__(self, work: Path, broker: Mosquitto, project: Path, profile: bool) -> None:
        self.work = work
        self.broker = broker
        self.project = project
        self.profile = profile
        self.subscribers = SubscriberRuns(work, project, PACKAGE, stop_timeout=10.0)
        self.probe = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-probe")  # type: ignore[attr-defined]
        self.probe.connect("127.0.0.1", broker.port)
        self.probe.loop_start()

    def close(self) -> None:
        self.probe.loop_stop()
        self.probe.disconnect()

    def start(
        self, impl: str, count: int, warmup: int, mode: str, profile_to: Path | None = None
    ) -> Subscriber:
        settings = {
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(self.broker.port),
            "MQTT_CLIENT_ID": f"bench-{impl}-{uuid.uuid4().hex[:8]}",
            "MQTT_CLEAN_SESSION": "true",
        }
        kind, client, event_loop, _ = SUBSCRIBERS[impl]
        settings["MQTT_CLIENT"] = client
        settings["EVENT_LOOP"] = event_loop
        if impl == "raw-aiomqtt-ack":
            settings["BENCH_MANUAL_ACK"] = "1"
        script = "_raw_gmqtt.py" if client == "gmqtt" else "_raw_mqtt.py"
        subscriber = self.subscribers.spawn(
            "generated" if kind == "generated" else impl,
            [PYTHON, str(BENCH / script)],
            settings,
            count=count,
            warmup=warmup,
            mode=mode,
            profile_to=profile_to,
        )
        deadline = time.monotonic() + 30
        while not subscriber.ready(deadline):
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
            publisher = mosquitto_pub(
                self.broker.port, qos, f"bench-pub-{self.subscribers.runs}", lines
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
            **throughput(result),
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
        return {
            "ok": True,
            **latency_figures(result),
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
        publisher = mosquitto_pub(self.broker.port, qos, f"bench-cpub-{qos}", lines)
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


def verdict(value: float, target: float, unit: str = "x") -> str:
    if value != value:  # nan: not measured
        return "not measured"
    if value >= target:
        return "met"
    return f"MISSED ({value:,.2f}{unit} against {target:,.2f}{unit})"


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
    parser.add_argument(
        "--subscribers",
        metavar="A,B",
        help="only these subscribers (default: all but gen-aiomqtt-uvloop): "
        + ", ".join(SUBSCRIBERS),
    )
    add_profile_options(parser)
    args = parser.parse_args()
    selected = args.subscribers.split(",") if args.subscribers else list(SUBSCRIBERS)
    unknown = set(selected) - set(SUBSCRIBERS)
    if unknown:
        parser.error(f"unknown subscribers: {', '.join(sorted(unknown))}")
    flooded = {
        qos: tuple(
            impl
            for impl in SUBSCRIBERS
            if impl in selected
            and (impl in FLOODED[qos] or (args.subscribers and impl.endswith("-uvloop")))
            and not (qos == 0 and impl == "raw-aiomqtt-ack")
        )
        for qos in (0, 1)
    }
    latency_impls = tuple(impl for impl in LATENCY if impl in selected)
    count = args.count or (10_000 if args.quick else 20_000)
    rounds = args.rounds or (2 if args.quick else 3)
    warmup = min(2000, count // 10)
    latency_seconds = 0.0 if args.quick else 3.0
    flood_timeout = 120.0

    print(
        run_header(
            f"{count:,} msgs/flood x {rounds} rounds, payload {len(PAYLOAD)} B, mosquitto "
            "max_inflight_messages "
            f"{20 if args.broker_inflight is None else args.broker_inflight}"
        )
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncgen-bench-mqtt-") as temp:
        work = Path(temp)
        project = generate_example(
            "mqtt",
            work,
            {f"{PACKAGE}/handlers/receive_telemetry.py": HANDLER.format(package=PACKAGE)},
        )
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
        ceilings: dict[int, list[float]] = defaultdict(list)
        try:
            for index in range(rounds):
                for qos in (0, 1):
                    ceilings[qos].append(bench.ceiling(qos, lines, count, flood_timeout))
                    impls = flooded[qos] if index % 2 == 0 else flooded[qos][::-1]
                    this_round: dict[str, float] = {}
                    for impl in impls:
                        outcome = bench.flood(impl, qos, lines, count, warmup, flood_timeout)
                        if not outcome["ok"]:
                            collected.failures.append(
                                f"{impl} QoS {qos} round {index + 1}: did not get {count} "
                                f"messages in {flood_timeout:.0f} s"
                            )
                            continue
                        collected.add(impl, qos, outcome, this_round)
                    for impl, base in (
                        ("gen-aiomqtt", "raw-aiomqtt"),
                        ("gen-gmqtt", "gen-aiomqtt"),
                        ("gen-gmqtt", "raw-gmqtt"),
                        ("gen-gmqtt-uvloop", "gen-gmqtt"),
                        ("gen-aiomqtt-uvloop", "gen-aiomqtt"),
                    ):
                        if impl in this_round and base in this_round:
                            collected.paired[(impl, base, qos)].append(
                                this_round[impl] / this_round[base]
                            )
                print(f"  ... round {index + 1}/{rounds} done", file=sys.stderr, flush=True)
            latencies: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
            if latency_seconds:
                for index in range(rounds):
                    for qos in (1, 0):
                        for impl in latency_impls if index % 2 == 0 else latency_impls[::-1]:
                            latencies[(impl, qos)].append(
                                bench.latency(impl, qos, args.rate, latency_seconds)
                            )
            profile_text = ""
            if args.profile and _profile.available():
                parts = []
                for impl, qos in (("gen-gmqtt", 0), ("gen-gmqtt", 1), ("gen-aiomqtt", 1)):
                    spy_file = work / f"spy-{impl}-{qos}.txt"
                    bench.flood(impl, qos, lines, count, warmup, flood_timeout, spy_to=spy_file)
                    measured = median(collected.rates[(impl, qos)])
                    parts.append(
                        _profile.subscriber_report(
                            spy_file, count, args.top, "generated", f"{impl} QoS {qos}", measured
                        )
                    )
                profile_text = "\n\n".join(parts)
            elif args.profile:
                profile_file = work / "generated.prof"
                bench.flood("gen-gmqtt", 1, lines, count, warmup, flood_timeout * 3, profile_file)
                deadline = time.monotonic() + 30
                while not profile_file.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if profile_file.exists():
                    profile_text = _profile.profile_report(profile_file, count, args.top)
                else:
                    profile_text = "(profile not written)"
        finally:
            bench.close()
            broker.stop()

    def rate(impl: str, qos: int) -> float:
        return median(collected.rates[(impl, qos)])

    def cpu(impl: str, qos: int) -> float:
        return median(collected.cpu_us[(impl, qos)])

    # -- tables ------------------------------------------------------------------------
    print()
    rows = [
        [
            "c (mosquitto_sub)",
            f"{median(ceilings[0]):,.0f}",
            f"{median(ceilings[1]):,.0f}",
            "-",
            "-",
            "-",
        ]
    ]
    for impl, (_kind, _client, _loop, after) in SUBSCRIBERS.items():
        if impl not in flooded[1]:
            continue
        q0 = rate(impl, 0) if impl in flooded[0] else float("nan")
        rows.append(
            [
                impl,
                "-" if q0 != q0 else f"{q0:,.0f}",
                f"{rate(impl, 1):,.0f}",
                "-" if q0 != q0 else f"{cpu(impl, 0):.1f}",
                f"{cpu(impl, 1):.1f}",
                "after handler" if after else "on receipt",
            ]
        )
    print(
        table(
            ["subscriber", "QoS 0 msg/s", "QoS 1 msg/s", "QoS 0 CPU us", "QoS 1 CPU us", "ack"],
            rows,
            title=f"throughput: mosquitto_pub -l flood (C), msgs {warmup:,}..{count:,} timed, "
            f"median of {rounds}; CPU = the subscriber's CPU time per message (less "
            "sensitive to other load than msg/s)",
        )
    )
    print(collected.runs_line(kind_prefix="QoS "))
    print()
    rows = []
    for impl, base, target in (
        ("gen-gmqtt", "gen-aiomqtt", TARGET_GMQTT_RATIO),
        ("gen-aiomqtt", "raw-aiomqtt", dict.fromkeys((0, 1), TARGET_AIOMQTT_RATIO)),
        ("gen-gmqtt", "raw-gmqtt", None),
        ("gen-gmqtt-uvloop", "gen-gmqtt", None),
        ("gen-aiomqtt-uvloop", "gen-aiomqtt", None),
    ):
        if impl not in flooded[1] or base not in flooded[1]:
            continue
        for qos in (0, 1):
            ratio = rate(impl, qos) / rate(base, qos)
            rows.append(
                [
                    f"{impl} / {base}",
                    f"QoS {qos}",
                    f"{ratio:.2f}x",
                    f"{median(collected.paired[(impl, base, qos)]):.2f}x",
                    f"{cpu(base, qos) / cpu(impl, qos):.2f}x",
                    "-" if target is None else f">= {target[qos]}x: {verdict(ratio, target[qos])}",
                ]
            )
    gmqtt_rate = rate("gen-gmqtt", 0)
    rows.append(
        [
            "gen-gmqtt",
            "QoS 0",
            f"{gmqtt_rate:,.0f} msg/s",
            "-",
            "-",
            f">= {TARGET_GMQTT_RATE:,.0f} msg/s: {verdict(gmqtt_rate, TARGET_GMQTT_RATE, '')}",
        ]
    )
    print(
        table(
            ["ratio", "flood", "msg/s", "paired", "CPU per msg", "target"],
            rows,
            title="ratios in this run (paired = median of the ratios within a round; CPU per "
            "msg = the base's CPU time per message over the subscriber's)",
        )
    )
    if latencies:
        print()
        rows = []
        for qos in (1, 0):
            for impl in latency_impls:
                rows.append([f"QoS {qos}", impl, *latency_cells(latencies[(impl, qos)])])
        print(
            table(
                ["latency", "subscriber", "p50 ms", "p99 ms", "p99 per run", "max ms", "sent"],
                rows,
                title=f"latency at {args.rate:,} msg/s, {latency_seconds:.0f} s per run, "
                f"median of {rounds} runs (paho publisher, send time in the topic; first "
                "tenth dropped as warm-up)",
            )
        )
    print()
    rows = []
    for impl, (kind, *_rest) in SUBSCRIBERS.items():
        if impl not in flooded[1]:
            continue
        idle = median(collected.idle[impl])
        flood = max(collected.flood_hwm[impl]) if collected.flood_hwm[impl] else None
        target = ""
        if kind == "generated":
            target = f"idle < {TARGET_IDLE_MIB:.0f} MiB: " + (
                "met" if idle < TARGET_IDLE_MIB else f"MISSED by {idle - TARGET_IDLE_MIB:.1f} MiB"
            )
        rows.append([impl, mib(idle), mib(flood), target])
    print(
        table(
            ["subscriber", "idle VmRSS MiB", "peak in flood MiB", "target"],
            rows,
            title="memory (/proc/<pid>/status): idle once subscribed; the largest VmHWM after "
            "a flood (backlog buffered by the subscriber)",
        )
    )
    print()
    for qos in (0, 1):
        print(
            json.dumps(
                {
                    "subscriber": "c",
                    "client": "mosquitto_sub",
                    "qos": qos,
                    "msg_per_s": round(median(ceilings[qos]), 1),
                }
            )
        )
        for impl in flooded[qos]:
            kind, client, event_loop, after = SUBSCRIBERS[impl]
            print(
                json.dumps(
                    {
                        "subscriber": kind,
                        "client": client,
                        "qos": qos,
                        "msg_per_s": round(rate(impl, qos), 1),
                        "cpu_us_per_msg": round(cpu(impl, qos), 2),
                        "event_loop": event_loop,
                        "ack": "after-handler" if after and qos else "on-receipt",
                        "idle_rss_mib": round(median(collected.idle[impl]), 1),
                    }
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
