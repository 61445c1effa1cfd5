"""`in_flight` in /admin/adapters with several gateway worker processes (`hybrid serve --workers
N`): the requests every live worker holds on a version, read from the metrics folder the
workers share (prometheus_client's multiprocess files), in seconds. Real processes write the
files, as workers do; the answering gateway is this process. The same through `hybrid serve
--workers 2`, with a stream in flight: tests/serving/test_gateway_workers.py."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from fastapi.testclient import TestClient

from hybrid.workers import _forget_metrics
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import GatewayConfig, GatewayMetrics, GatewayState, create_app
from tests.serving.fake_engine import FakeEngine

HOLDER = """
import sys
from pathlib import Path
from serving.gateway.metrics import GatewayMetrics

metrics = GatewayMetrics(multiprocess_dir=Path(sys.argv[1]), worker=int(sys.argv[2]))
for name in sys.argv[3:]:
    metrics.lease_changed(name, 1)
metrics.lease_changed("voice@v2", 1)
metrics.lease_changed("voice@v2", -1)  # taken and released: none held
print("holding", flush=True)
sys.stdin.read()  # holds until the test closes its stdin
"""


def holder(folder, worker: int, *names: str) -> subprocess.Popen:
    """A process counting leases as gateway worker `worker` does, holding them until stdin
    closes."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), str(worker), *names],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "holding"
    return proc


def gateway(registry, metrics: GatewayMetrics) -> tuple[TestClient, AdapterManager]:
    engine = FakeEngine()
    client = EngineClient("http://fake-engine", transport=httpx.ASGITransport(engine.app))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), engine.base)
    state = GatewayState.build(GatewayConfig(), manager, metrics=metrics)
    return TestClient(create_app(state)), manager


def listed(client: TestClient) -> dict[str, dict]:
    answer = client.get("/admin/adapters")
    assert answer.status_code == 200, answer.text
    return {a["id"]: a for a in answer.json()["adapters"]}


def test_in_flight_sums_every_live_workers_leases(voice_registry, tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    workers = [
        holder(folder, 0, "voice@v1", "voice@v1"),
        holder(folder, 1, "voice@v1", "base"),
    ]
    try:
        client, _ = gateway(voice_registry, GatewayMetrics(multiprocess_dir=folder, worker=0))
        with client:
            versions = listed(client)
            assert versions["voice@v1"]["in_flight"] == 3
            assert versions["voice@v1"]["in_flight_by_worker"] == {"0": 2, "1": 1}
            assert versions["voice@v2"]["in_flight"] == 0
            assert versions["voice@v2"]["in_flight_by_worker"] == {}

            # Worker 1 dies; the parent forgets its gauges (hybrid/workers.py), as /metrics does.
            workers[1].stdin.close()
            workers[1].wait(30)
            _forget_metrics(workers[1].pid, folder)
            versions = listed(client)
            assert versions["voice@v1"]["in_flight"] == 2
            assert versions["voice@v1"]["in_flight_by_worker"] == {"0": 2}
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.stdin.close()
                proc.wait(30)


def test_one_process_counts_its_own_leases(voice_registry):
    client, manager = gateway(voice_registry, GatewayMetrics())
    with client:
        lease = client.portal.call(manager.lease, "voice")
        versions = listed(client)
        assert versions["voice@v1"]["in_flight"] == 1
        assert "in_flight_by_worker" not in versions["voice@v1"]
        assert client.app.state.gateway.metrics.leases_by_worker() == {"voice@v1": {"0": 1}}
        lease.release()
        assert listed(client)["voice@v1"]["in_flight"] == 0
