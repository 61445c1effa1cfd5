"""`hybrid serve --workers 2` as a user runs it: two gateway processes on one port, attached to
an engine over HTTP (the fake vLLM of tests/serving/fake_engine.py served by uvicorn in this
process, so the test can slow it down and see what is loaded; the real-vLLM run of the same
path is test_gateway_workers_vllm.py). Both workers answer, a promote in one worker drains a
request streaming in the other, and /metrics on either worker counts both."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import httpx
import psutil
import pytest
import yaml

from tests.helpers.gateway import (
    HYBRID,
    ServerThread,
    free_port,
    on_worker,
    requests_counted,
    start_serve,
    wait_ready,
)
from tests.helpers.reliability import record
from tests.serving.fake_engine import FakeEngine

pytestmark = pytest.mark.slow

CHAT = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8}


@pytest.fixture
def served(tmp_path, tiny_llama_dir, voice_registry):
    engine = FakeEngine()
    with ServerThread(engine.app) as fake:
        port = free_port()
        config = tmp_path / "hybrid.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "remote_engines": {"urls": [fake.url]},
                    "base_model": str(tiny_llama_dir),
                    "adapters": {"registry": str(voice_registry.root)},
                    "gateway": {"port": port, "max_pending_requests": 64, "drain_timeout_s": 30},
                }
            )
        )
        log = tmp_path / "serve.log"
        proc = start_serve(config, log, args=("--workers", "2"))
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc, log, 120)
            yield engine, url, proc, log
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)


@pytest.mark.reliability
def test_two_workers_share_the_port_leases_and_metrics(served):
    engine, url, proc, log = served
    first, second = on_worker(url, 0), on_worker(url, 1)  # both accept on the one port

    for client in (first, second):
        for _ in range(3):
            answer = client.post("/v1/chat/completions", json={**CHAT, "model": "base"})
            assert answer.status_code == 200, answer.text
    # Counted where they ran, summed by prometheus_client's multiprocess collector.
    assert requests_counted(first, "base") == requests_counted(second, "base") == 6

    # A request streams voice@v1 on worker 0 while worker 1 promotes voice to v2.
    engine.word_delay_s = 1.5  # 4 words: the stream lasts 6 s
    body = {**CHAT, "model": "voice", "stream": True}
    assert first.get("/health").json()["worker"] == 0  # its connection is still open there
    with first.stream("POST", "/v1/chat/completions", json=body) as stream:
        lines = stream.iter_lines()
        first_chunk = next(line for line in lines if line.startswith("data: "))
        assert '"model":"voice@v1"' in first_chunk.replace(" ", "")
        # Worker 1 counts the request worker 0 holds (the metrics folder they share).
        listing = {a["id"]: a for a in second.get("/admin/adapters").json()["adapters"]}
        assert listing["voice@v1"]["in_flight"] == 1, listing
        assert listing["voice@v1"]["in_flight_by_worker"] == {"0": 1}
        promoted = second.post("/admin/adapters/voice/promote", json={"version": "v2"})
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["previous_unloading"] is True  # worker 1 never served v1 itself
        time.sleep(1.0)
        assert {"voice@v1", "voice@v2"} <= set(engine.adapters)  # v1 drains, not unloaded
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    text = "".join(re.findall(r'"content":\s*"([^"]*)"', first_chunk + "".join(rest)))
    assert text == "voice@v1 says: hello there"
    deadline = time.monotonic() + 20
    while "voice@v1" in engine.adapters and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "voice@v1" not in engine.adapters, "worker 1 never unloaded v1 after the drain"
    for client in (first, second):  # both resolve the new version now
        answer = client.post("/v1/chat/completions", json={**CHAT, "model": "voice"})
        assert answer.json()["model"] == "voice@v2"
    # A pinned old version is loaded again by worker 0, which had seen it loaded before.
    pinned = first.post("/v1/chat/completions", json={**CHAT, "model": "voice@v1"})
    assert pinned.status_code == 200 and pinned.json()["model"] == "voice@v1", pinned.text
    assert requests_counted(second, "voice") == 3

    # Worker 1 killed with SIGKILL in the middle of a stream: the kernel drops its lease, so
    # worker 0 unloads at once (not after drain_timeout_s), and the parent starts worker 1 again.
    engine.word_delay_s = 5.0
    doomed = on_worker(url, 1)
    with (
        pytest.raises(httpx.TransportError),  # also proves the right worker was killed
        doomed.stream("POST", "/v1/chat/completions", json=body) as stream,
    ):
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        workers = sorted(  # spawned in order, so pids ascend: [worker 0, worker 1]
            (c for c in psutil.Process(proc.pid).children() if "spawn_main" in str(c.cmdline())),
            key=lambda c: c.pid,
        )
        workers[1].kill()
        killed = time.monotonic()
        list(lines)
    started = time.monotonic()
    unloaded = on_worker(url, 0).post("/admin/adapters/voice/unload")
    unload_s = time.monotonic() - started
    assert unloaded.status_code == 200, unloaded.text
    assert unload_s < 10 and not engine.adapters
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with httpx.Client(base_url=url) as probe:
            if probe.get("/health").json()["worker"] == 1:
                break
    else:
        raise AssertionError(f"worker 1 was not started again:\n{log.read_text()}")
    in_flight = re.findall(
        r'hybrid_requests_in_flight\{model="voice"\} (\S+)', first.get("/metrics").text
    )
    assert (float(in_flight[0]) if in_flight else 0.0) == 0.0, in_flight  # live workers only
    record(
        "Faults",
        "Gateway worker killed (kill -9) mid-stream, 2 workers: its lease, the unload elsewhere",
        unload_after_kill_s=round(unload_s, 2),
        worker_back_after_s=round(time.monotonic() - killed, 1),
        leases_left=0,
    )
    engine.word_delay_s = None

    # Ctrl-C in a terminal signals the whole process group: a stream in flight still ends.
    engine.word_delay_s = 0.5
    with first.stream("POST", "/v1/chat/completions", json=body) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        os.killpg(proc.pid, signal.SIGINT)
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    assert proc.wait(60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_bad_workers_values_are_one_line_errors(tmp_path):
    for value, words in (
        ("0", "workers: Input should be greater than or equal to 1 (got 0)"),
        ("65", "workers: Input should be less than or equal to 64 (got 65)"),
    ):
        done = subprocess.run(
            [*HYBRID, "serve", "--workers", value], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 1
        assert done.stderr.strip() == f"error: options: 1 problem(s): {words}", done.stderr
    config = tmp_path / "hybrid.yaml"
    config.write_text(yaml.safe_dump({"gateway": {"max_pending_requests": 2}}))
    done = subprocess.run(
        [*HYBRID, "serve", str(config), "--workers", "4"], capture_output=True, text=True
    )
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "max_pending_requests (2) is below gateway.workers (4)" in done.stderr
