"""`hybrid serve --workers 2` with a real vLLM it starts and supervises: the parent starts the
engine once, both workers attach to it, the official openai client streams an adapter through
both workers while one of them promotes a new version: no request fails, the old version is
unloaded once every worker's streams on it are done, /metrics on either worker counts all of
them, and SIGINT leaves no engine behind. The drain's timing across workers is tested in
seconds over a slow fake engine (test_gateway_workers.py)."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import openai
import pytest
import yaml

from tests.helpers.gateway import free_port, on_worker, requests_counted, start_serve, wait_ready

pytestmark = pytest.mark.vllm


def test_two_workers_on_one_supervised_engine(tmp_path, tiny_llama_dir, voice_registry):
    port, engine_port = free_port(), free_port()
    engine_key = "engine-key-for-this-test-only-0123456789"
    config = tmp_path / "hybrid.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "engine": {
                    "model": str(tiny_llama_dir),
                    "served_model_name": "tiny",
                    "port": engine_port,
                    "max_model_len": 256,
                    "max_lora_rank": 8,
                    "dtype": "float32",
                    "kv_cache_gib": 1,
                    "api_key": engine_key,
                },
                "adapters": {"registry": str(voice_registry.root)},
                "gateway": {"port": port},
            }
        )
    )
    log = tmp_path / "serve.log"
    proc = start_serve(config, log, args=("--workers", "2"))
    url = f"http://127.0.0.1:{port}"
    engine = httpx.Client(
        base_url=f"http://127.0.0.1:{engine_port}",
        headers={"Authorization": f"Bearer {engine_key}"},
        timeout=30,
    )

    def engine_adapters() -> set[str]:
        return {m["id"] for m in engine.get("/v1/models").json()["data"] if m["parent"]}

    stop = threading.Event()
    served: list[str] = []
    errors: list[str] = []

    def load(worker: int) -> None:
        pinned = on_worker(url, worker)  # the openai client sends through this connection
        client = openai.OpenAI(
            base_url=url + "/v1", api_key="none", max_retries=0, http_client=pinned
        )
        while not stop.is_set():
            try:
                stream = client.chat.completions.create(
                    model="voice",
                    messages=[{"role": "user", "content": "tell me a story"}],
                    max_tokens=48,
                    stream=True,
                )
                models = {chunk.model for chunk in stream}
                served.append(",".join(sorted(models)))
            except Exception as exc:  # every failure is a finding here
                errors.append(f"worker {worker}: {type(exc).__name__}: {exc}")

    try:
        wait_ready(url, proc, log, 400)
        threads = [threading.Thread(target=load, args=(w,)) for w in (0, 0, 1, 1)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        admin = on_worker(url, 1)
        promoted = admin.post("/admin/adapters/voice/promote", json={"version": "v2"})
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["previous_unloading"] is True
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join(120)
        assert not errors, errors[:3]
        assert served.count("voice@v1") > 0 and served.count("voice@v2") > 0, served
        assert all(models in ("voice@v1", "voice@v2") for models in served), served
        deadline = time.monotonic() + 60
        while "voice@v1" in engine_adapters() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert engine_adapters() == {"voice@v2"}
        counted = [requests_counted(on_worker(url, w), "voice") for w in (0, 1)]
        assert counted == [len(served), len(served)], (counted, len(served))
    finally:
        stop.set()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(90)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{engine_port}/health", timeout=2)
