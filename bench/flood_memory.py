"""The generated service's memory under a flood it cannot keep up with.

    python bench/flood_memory.py            # ~1.5 minutes
    python bench/flood_memory.py --quick    # 10,000 messages instead of 40,000

A flood publisher in its own process sends N messages of 4 KB (the spec's example,
padded with JSON white space) as fast as it can, at MQTT QoS 0 and on NATS core, to the
generated service whose handler sleeps 50 ms. The service cannot handle more than 20 a
second, so almost all of the flood has to wait somewhere or be dropped: the service keeps
at most MAX_PENDING_MESSAGES waiting and drops (and counts) the rest. The table gives the
service's RSS before the flood, its peak during the flood and the drain after it, the
growth (the target: at most 20 MiB) and the service's own counts. Each protocol runs with
the default MAX_PENDING_MESSAGES (1,000) and with 100.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    Mosquitto,
    NatsServer,
    generate_example,
    proc_status,
    run_header,
    stop_process,
    table,
)

HANDLER = """
import asyncio
from typing import Any


async def handle(message: Any, *rest: Any) -> None:
    await asyncio.sleep(0.05)
"""

READING = {"deviceId": "d1", "value": 21.5, "timestamp": "2024-01-15T10:30:00Z"}
TELEMETRY = {
    "deviceId": "d1",
    "timestamp": "2024-01-15T10:30:00Z",
    "sensors": {"temperature": 23.5, "humidity": 65.2},
}

MQTT_PUBLISHER = """
import sys, time
import paho.mqtt.client as paho
port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
payload = open(path, "rb").read()
client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="flood")
client.max_queued_messages_set(0)
client.connect("127.0.0.1", port)
client.loop_start()
for _ in range(count):
    client.publish("devices/d1/telemetry", payload, qos=0)
while client.want_write():
    time.sleep(0.01)
time.sleep(0.5)
client.loop_stop()
client.disconnect()
"""


def padded(payload: dict[str, object], size: int = 4096) -> bytes:
    body = json.dumps(payload).encode()
    return body + b" " * (size - len(body))


def measure(
    project: Path, package: str, env: dict[str, str], publisher: list[str]
) -> dict[str, float]:
    log = project / f"service-{time.monotonic_ns()}.log"
    service = subprocess.Popen(
        [PYTHON, "-m", package],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src"), "STATS_INTERVAL": "1", **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while "connected to" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or service.poll() is not None:
                raise SystemExit(f"the service did not start:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(1.0)
        before = proc_status(service.pid)["VmRSS"]
        peak = before
        started = time.monotonic()
        flood = subprocess.Popen(publisher)
        while flood.poll() is None and time.monotonic() - started < 300:
            peak = max(peak, proc_status(service.pid).get("VmRSS", 0))
            time.sleep(0.05)
        stop_process(flood)
        sent_in = time.monotonic() - started
        for _ in range(40):  # the drain after the flood
            peak = max(peak, proc_status(service.pid).get("VmRSS", 0))
            time.sleep(0.05)
        time.sleep(1.0)
        text = log.read_text(errors="replace")
    finally:
        stop_process(service)
    dropped = re.findall(r'service stats \{"dropped": (\d+)', text)
    received = re.findall(r'"received": (\d+)', text)
    return {
        "before": before,
        "peak": peak,
        "growth": peak - before,
        "dropped": int(dropped[-1]) if dropped else 0,
        "received": max((int(n) for n in received), default=0),
        "seconds": sent_in,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 messages, not 40,000")
    args = parser.parse_args()
    count = 10_000 if args.quick else 40_000
    print(run_header(f"{count:,} messages of 4 KB to a 50 ms handler"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="asyncgen-bench-flood-") as tmp:
        work = Path(tmp)
        mqtt_project = generate_example(
            "mqtt",
            work / "mqtt",
            {"iot_device_management/handlers/receive_telemetry.py": HANDLER},
        )
        nats_project = generate_example(
            "nats",
            work / "nats",
            {"iot_device_management_nats/handlers/receive_temperature_reading.py": HANDLER},
        )
        (work / "telemetry").write_bytes(padded(TELEMETRY))
        (work / "reading").write_bytes(padded(READING))
        broker = Mosquitto(work / "mosquitto")
        server = NatsServer(work / "nats-server")
        broker.start()
        server.start()
        try:
            for pending in ("1000", "100"):
                figures = measure(
                    mqtt_project,
                    "iot_device_management",
                    {
                        "MQTT_PORT": str(broker.port),
                        "MQTT_CLIENT_ID": f"flood-{pending}",
                        "MAX_PENDING_MESSAGES": pending,
                    },
                    [
                        PYTHON,
                        "-c",
                        MQTT_PUBLISHER,
                        str(broker.port),
                        str(count),
                        str(work / "telemetry"),
                    ],
                )
                rows.append(("MQTT QoS 0", pending, figures))
                figures = measure(
                    nats_project,
                    "iot_device_management_nats",
                    {"NATS_URL": server.url, "MAX_PENDING_MESSAGES": pending},
                    [
                        PYTHON,
                        str(Path(__file__).resolve().parent / "_nats_pub.py"),
                        server.url,
                        "sensors.temperature.d1",
                        str(count),
                        str(work / "reading"),
                    ],
                )
                rows.append(("NATS core", pending, figures))
        finally:
            broker.stop()
            server.stop()
    print(
        table(
            [
                "flood",
                "MAX_PENDING",
                "RSS before MiB",
                "peak MiB",
                "growth MiB",
                "handled",
                "dropped",
                "flood s",
            ],
            [
                (
                    name,
                    pending,
                    f"{f['before']:.1f}",
                    f"{f['peak']:.1f}",
                    f"{f['growth']:.1f}",
                    int(f["received"]),
                    int(f["dropped"]),
                    f"{f['seconds']:.1f}",
                )
                for name, pending, f in rows
            ],
        )
    )
    print("Target: growth at most 20 MiB. Messages neither handled nor dropped by the service")
    print("were dropped by the broker on the way (mosquitto, nats-server slow-consumer limits).")


if __name__ == "__main__":
    main()
