"""Gateways on several hosts sharing one engine and one registry, as separate `hybrid serve`
processes with their own configs (not `--workers`): with the same `gateway.lease_dir`, a promote
on gateway B waits for a stream gateway A is sending on the old version; gateway C, without it,
unloads the old version under A's stream at once (what `lease_dir` prevents). The engine is the
fake vLLM of tests/serving/fake_engine.py served over HTTP in this process, slowed down so a
stream is in flight; the locks are the POSIX record locks NFS v4 gives across hosts
(serving/adapters/leases.py)."""

from __future__ import annotations

import re
import signal
import time

import httpx
import pytest
import yaml

from tests.helpers.gateway import ServerThread, free_port, start_serve, wait_ready
from tests.serving.fake_engine import FakeEngine

pytestmark = pytest.mark.slow

CHAT = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8}


@pytest.fixture
def gateways(tmp_path, tiny_llama_dir, voice_registry):
    """Gateways A and B (lease_dir shared) and C (no lease_dir), each its own process."""
    engine = FakeEngine()
    leases = tmp_path / "shared" / "leases"
    procs = []
    with ServerThread(engine.app) as fake:
        urls = {}
        for name, lease_dir in (("a", leases), ("b", leases), ("c", None)):
            port = free_port()
            gateway = {"port": port, "drain_timeout_s": 30}
            if lease_dir is not None:
                gateway["lease_dir"] = str(lease_dir)
            else:  # without shared leases a gateway learns others' unloads at health checks
                gateway["health_interval_s"] = 0.5
            config = tmp_path / f"host-{name}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "remote_engines": {"urls": [fake.url]},
                        "base_model": str(tiny_llama_dir),
                        "adapters": {"registry": str(voice_registry.root)},
                        "gateway": gateway,
                    }
                )
            )
            log = tmp_path / f"host-{name}.log"
            procs.append((start_serve(config, log), log))
            urls[name] = f"http://127.0.0.1:{port}"
        try:
            for (proc, log), url in zip(procs, urls.values(), strict=True):
                wait_ready(url, proc, log, 120)
            yield engine, urls
        finally:
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for proc, log in procs:
                assert proc.wait(60) == 0, log.read_text()
                assert "Traceback" not in log.read_text()


def stream_text(lines: list[str]) -> str:
    return "".join(re.findall(r'"content":\s*"([^"]*)"', "".join(lines)))


def test_a_promote_on_one_host_waits_for_a_stream_on_another(gateways):
    engine, urls = gateways
    a, b, c = (httpx.Client(base_url=urls[n], timeout=60) for n in "abc")
    body = {**CHAT, "model": "voice", "stream": True}

    engine.word_delay_s = 1.5  # 4 words: a stream lasts 6 s
    with a.stream("POST", "/v1/chat/completions", json=body) as stream:
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert '"model":"voice@v1"' in first.replace(" ", "")
        promoted = b.post("/admin/adapters/voice/promote", json={"version": "v2"})
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["previous_unloading"] is True
        time.sleep(1.0)
        assert {"voice@v1", "voice@v2"} <= set(engine.adapters), "B unloaded v1 under A's stream"
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    assert stream_text([first, *rest]) == "voice@v1 says: hello there"
    deadline = time.monotonic() + 20
    while "voice@v1" in engine.adapters and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "voice@v1" not in engine.adapters, "B never unloaded v1 after A's stream ended"
    answer = a.post("/v1/chat/completions", json={**CHAT, "model": "voice"})
    assert answer.json()["model"] == "voice@v2", answer.text  # A follows the shared registry

    # C shares the engine and the registry but not the lease folder: its promote cannot see
    # A's stream and unloads the version under it at once.
    time.sleep(1.5)  # C's health checks (every 0.5 s) have seen B unload v1
    assert c.post("/v1/chat/completions", json={**CHAT, "model": "voice"}).json()["model"] == (
        "voice@v2"
    )
    with a.stream("POST", "/v1/chat/completions", json=body) as stream:
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert '"model":"voice@v2"' in first.replace(" ", "")
        promoted = c.post("/admin/adapters/voice/promote", json={"version": "v1"})
        assert promoted.status_code == 200, promoted.text
        deadline = time.monotonic() + 3
        while "voice@v2" in engine.adapters and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "voice@v2" not in engine.adapters, "without lease_dir C waited after all"
        list(lines)
    engine.word_delay_s = None
    for client in (a, b, c):
        client.close()
