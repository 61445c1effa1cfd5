"""Prometheus metrics of the gateway, in a registry of its own (one per app instance, so tests
and several gateways in one process never share counters). Label `model` is the model id the
client asked for (base, adapter alias or version, app); `served` the engine name that answered.

Several gateway worker processes (`hybrid serve --workers N`) use prometheus_client's
multiprocess mode: each worker writes its values to memory-mapped files in one folder, and
`/metrics` on any worker sums them (requests in flight: over live workers only). The library
picks its value storage when it is imported, from `PROMETHEUS_MULTIPROC_DIR`, so the workers
are started with it set (hybrid/workers.py); `multiprocess_dir` must name the same folder.
The same files tell `/admin/adapters` how many requests every live worker holds on each
adapter version (`leases_by_worker`).
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LEASES = "hybrid_adapter_leases"
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 300)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess_dir: Path | None = None, worker: int = 0) -> None:
        """
        Args:
            multiprocess_dir: the worker processes' shared metrics folder (the value of
                `PROMETHEUS_MULTIPROC_DIR` when prometheus_client was imported); None: one
                process, values in memory.
            worker: this process's index among the gateway's workers (the `worker` label).
        """
        self.multiprocess_dir = multiprocess_dir
        self.worker = str(worker)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hybrid_requests",
            "Requests answered, by route, requested model and HTTP status.",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "hybrid_request_seconds",
            "Time from request to last byte, by route and requested model.",
            ["route", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "hybrid_time_to_first_token_seconds",
            "Streamed requests: time from request to the first content chunk.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "hybrid_tokens",
            "Tokens processed, by requested model, served engine name and kind.",
            ["model", "served", "kind"],
            registry=r,
        )
        self.in_flight = Gauge(
            "hybrid_requests_in_flight",
            "Requests being answered now.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.leases = Gauge(
            LEASES,
            "Requests holding a lease on a served model now (the base or an adapter version, "
            "its engine name), by gateway worker process.",
            ["served", "worker"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.adapter_operations = Counter(
            "hybrid_adapter_operations",
            "Adapter operations through the admin API, by operation and outcome.",
            ["operation", "outcome"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "hybrid_client_disconnects",
            "Streams the client closed before the end (the engine request was cancelled).",
            ["model"],
            registry=r,
        )

    def answered(self, route: str, model: str, status: int, started: float) -> None:
        """A request to `route` for `model` ended with `status`, `started` (perf_counter) ago."""
        self.requests.labels(route, model, str(status)).inc()
        self.latency.labels(route, model).observe(time.perf_counter() - started)

    def observe_usage(self, model: str, served: str, usage: dict | None) -> None:
        if not isinstance(usage, dict):
            return
        for kind in ("prompt_tokens", "completion_tokens"):
            value = usage.get(kind)
            if isinstance(value, int) and value > 0:
                self.tokens.labels(model, served, kind.removesuffix("_tokens")).inc(value)

    def lease_changed(self, served: str, change: int) -> None:
        """A request took (+1) or released (-1) a lease on engine name `served`."""
        self.leases.labels(served, self.worker).inc(change)

    def leases_by_worker(self) -> dict[str, dict[str, int]]:
        """Engine name -> {worker index: requests it holds}, over every live worker process
        (only those holding any), read from the shared folder; one process: its own."""
        if self.multiprocess_dir is None:
            metrics = self.leases.collect()
        else:
            merged = CollectorRegistry()
            collector = multiprocess.MultiProcessCollector(merged, path=str(self.multiprocess_dir))
            metrics = [m for m in collector.collect() if m.name == LEASES]
        out: dict[str, dict[str, int]] = {}
        for metric in metrics:
            for sample in metric.samples:
                held = int(sample.value)
                if held > 0:
                    served, worker = sample.labels["served"], sample.labels["worker"]
                    out.setdefault(served, {})[worker] = held
        return out

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(self.multiprocess_dir))
        return generate_latest(merged)
