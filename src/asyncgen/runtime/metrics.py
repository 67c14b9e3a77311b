"""Prometheus metrics of a service, read from its counters when scraped.

The receive path only counts (`OperationStats`, `ServiceStats`) and, while metrics are
served, records handler durations in `HandlerTimings`; this module turns those into
Prometheus metrics at scrape time, so that a message costs no more with metrics on.
Every integer field of the two stats dataclasses becomes a counter, so a counter added
there appears here without further change.

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy. Needs prometheus-client (the
project's `http` extra).
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .core import OperationStats, ServiceCore

PREFIX = "asyncgen"
#: Upper bounds of the handler duration buckets, in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST

_DESCRIPTIONS = {
    "received": "Messages received, valid or not",
    "handled": "Messages their handler handled",
    "invalid": "Messages refused by validation",
    "failed": "Messages whose handler raised or timed out",
    "dead_lettered": "Messages published to the dead-letter address",
    "published": "Messages the service published (replies and dead letters included)",
    "reconnects": "Connections made after the connection to the broker was lost",
}


class HandlerTimings:
    """Handler durations per operation, counted into histogram buckets."""

    def __init__(
        self, operations: Iterable[str], buckets: Sequence[float] = BUCKETS
    ) -> None:
        self.buckets = tuple(buckets)
        # One count per bucket and one for durations above the last bound.
        self.counts = {
            operation: [0] * (len(self.buckets) + 1) for operation in operations
        }
        self.sums = dict.fromkeys(self.counts, 0.0)

    def observe(self, operation: str, seconds: float) -> None:
        self.counts[operation][bisect_left(self.buckets, seconds)] += 1
        self.sums[operation] += seconds

    def cumulative(self, operation: str) -> list[tuple[str, float]]:
        """The buckets as Prometheus has them: counts up to each bound, then +Inf."""
        buckets = []
        total = 0
        for bound, count in zip(
            (*(repr(bound) for bound in self.buckets), "+Inf"),
            self.counts[operation],
            strict=True,
        ):
            total += count
            buckets.append((bound, float(total)))
        return buckets


def _counter_fields(stats: Any) -> list[str]:
    return [
        field.name
        for field in dataclasses.fields(stats)
        if isinstance(getattr(stats, field.name), int)
    ]


class ServiceCollector(Collector):
    """The metrics of one service, made from its counters when collected."""

    def __init__(self, service: ServiceCore[Any, Any], timings: HandlerTimings) -> None:
        self.service = service
        self.timings = timings

    def collect(self) -> Iterator[Metric]:
        service = self.service
        stats = service.stats
        for name in _counter_fields(OperationStats()):
            family = CounterMetricFamily(
                f"{PREFIX}_messages_{name}",
                _DESCRIPTIONS.get(name, f"Messages {name.replace('_', ' ')}")
                + ", by operation",
                labels=["operation"],
            )
            for operation, counters in stats.items():
                family.add_metric([operation], getattr(counters, name))
            yield family
        histogram = HistogramMetricFamily(
            f"{PREFIX}_handler_duration_seconds",
            "Time handlers took, by operation",
            labels=["operation"],
        )
        for operation in stats:
            histogram.add_metric(
                [operation],
                self.timings.cumulative(operation),
                self.timings.sums[operation],
            )
        yield histogram
        service_stats = getattr(service, "service_stats", None)
        if service_stats is not None:
            for name in _counter_fields(service_stats):
                yield CounterMetricFamily(
                    f"{PREFIX}_{name}",
                    _DESCRIPTIONS.get(name, name.replace("_", " ").capitalize()),
                    value=getattr(service_stats, name),
                )
        # Received but neither handled, failed nor refused yet.
        in_flight = sum(
            counters.received - counters.handled - counters.failed - counters.invalid
            for counters in stats.values()
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_messages_in_flight",
            "Messages being handled now",
            value=in_flight,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_connected",
            "1 while connected to the broker and subscribed, else 0",
            value=1 if service.connected.is_set() else 0,
        )


class Metrics:
    """A registry of the service's own (not prometheus-client's global one), fed by
    its counters; handler durations are recorded from creation on."""

    def __init__(self, service: ServiceCore[Any, Any]) -> None:
        self.timings = HandlerTimings(service.stats)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServiceCollector(service, self.timings))
        service.timings = self.timings

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
