"""The trivial handler shared by the generated services and the raw loops under benchmark.

It counts messages and, at BENCH_COUNT, writes what it measured to BENCH_OUT as JSON: the
time and the process's CPU time from message BENCH_WARMUP to the last one (throughput),
and in latency mode the delay of each message from the send time the publisher put in its
address (`t<ns>` as a topic level or subject token, from time.monotonic_ns(), which all
processes share).
A message whose address holds `probe` only says that the subscriber is up: the first one
creates BENCH_OUT + ".ready".
"""

from __future__ import annotations

import gc
import json
import os
import re
import time

_STAMP = re.compile(r"(?:^|[./])t(\d{6,})(?:[./]|$)")


class Sink:
    def __init__(self) -> None:
        self.count_target = int(os.environ.get("BENCH_COUNT", "0"))
        self.warmup = max(1, int(os.environ.get("BENCH_WARMUP", "1")))
        self.out = os.environ.get("BENCH_OUT", "")
        self.latency = os.environ.get("BENCH_MODE") == "latency"
        self.count = 0
        self.started_ns = 0
        self.started_cpu = 0.0
        self.ready = False
        self.latencies_ns: list[int] = []
        #: (generation, pause in ns) of each garbage collection, to tell GC pauses from others
        self.gc_pauses: list[tuple[int, int]] = []
        self._gc_started = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter_ns()
        elif self.count:
            self.gc_pauses.append((info["generation"], time.perf_counter_ns() - self._gc_started))

    def record(self, address: str) -> None:
        now = time.monotonic_ns()
        if "probe" in address:
            if not self.ready and self.out:
                self.ready = True
                with open(self.out + ".ready", "w") as stream:
                    stream.write("ready\n")
            return
        self.count += 1
        if self.latency:
            match = _STAMP.search(address)
            if match is not None:
                self.latencies_ns.append(now - int(match.group(1)))
        if self.count == self.warmup:
            self.started_ns = now
            self.started_cpu = time.process_time()
        if self.count == self.count_target:
            result = {
                "count": self.count,
                "measured": self.count - self.warmup,
                "seconds": (now - self.started_ns) / 1e9,
                "cpu_seconds": time.process_time() - self.started_cpu,
                "latencies_ns": self.latencies_ns,
                "gc": {
                    str(generation): [
                        sum(1 for g, _ in self.gc_pauses if g == generation),
                        max((ns for g, ns in self.gc_pauses if g == generation), default=0) / 1e6,
                    ]
                    for generation in (0, 1, 2)
                },
            }
            temp = self.out + ".tmp"
            with open(temp, "w") as stream:
                json.dump(result, stream)
            os.replace(temp, self.out)


SINK = Sink()
