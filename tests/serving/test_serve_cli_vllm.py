"""`hybrid serve CONFIG.yaml` and `hybrid adapter ...` as a user runs them: real subprocesses,
a real vLLM, the official openai client. One gateway attaches to the session's vLLM server
(remote_engines); one starts and supervises its own and must leave nothing behind on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.helpers.gateway import HYBRID, free_port, start_serve, wait_ready
from tests.helpers.reliability import record

pytestmark = pytest.mark.vllm


def hybrid(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HYBRID, "--config", str(config), *args], capture_output=True, text=True, timeout=300
    )


def test_serve_attached_to_a_running_engine_and_adapter_cli(
    vllm_engine, tiny_llama_dir, lora_dir, tmp_path
):
    port = free_port()
    config = tmp_path / "hybrid.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "remote_engines": {"urls": [vllm_engine.url], "api_key": vllm_engine.api_key},
                "base_model": str(tiny_llama_dir),
                "adapters": {"registry": "registry"},
                "gateway": {"port": port},
            }
        )
    )
    log = tmp_path / "serve.log"
    # `hybrid serve hybrid.yaml` from the project folder: the registry path is relative to a
    # relatively named config, and the engine runs in another working directory (issue 13.11).
    proc = start_serve(Path("hybrid.yaml"), log, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log, 120)
        added = hybrid(config, "adapter", "register", str(lora_dir), "--name", "cli-voice")
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip() == "registered cli-voice@v1 (current)"
        again = hybrid(config, "adapter", "register", str(lora_dir), "--name", "cli-voice")
        assert again.stdout.strip() == "registered cli-voice@v2 (current)"

        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        answer = client.chat.completions.create(
            model="cli-voice", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert answer.model == "cli-voice@v2" and answer.choices[0].message.content

        listed = hybrid(config, "adapter", "list")
        assert listed.returncode == 0
        lines = listed.stdout.splitlines()
        assert any(line.startswith("* cli-voice@v2") and "loaded on" in line for line in lines)
        assert any(line.startswith("  cli-voice@v1") and "not loaded" in line for line in lines)

        promoted = hybrid(config, "adapter", "promote", "cli-voice@v1")
        assert promoted.stdout.strip() == "cli-voice: v2 -> v1", promoted.stderr
        loaded = hybrid(config, "adapter", "load", "cli-voice@v2")
        assert loaded.stdout.startswith("loaded cli-voice@v2")
        unloaded = hybrid(config, "adapter", "unload", "cli-voice")
        assert unloaded.stdout.strip() in (
            "unloaded cli-voice@v1, cli-voice@v2",
            "unloaded cli-voice@v2, cli-voice@v1",
        )

        bad = hybrid(config, "adapter", "register", str(tmp_path / "nowhere"), "--name", "x")
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert bad.stderr.startswith("error: 422: adapter folder not found")
        nothing = hybrid(config, "adapter", "promote", "cli-voice")
        assert "names no version" in nothing.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    assert vllm_engine.state == "ready"  # attaching never stops someone else's engine
    offline = hybrid(config, "adapter", "list", "--offline")
    assert "cli-voice@v1" in offline.stdout


@pytest.mark.reliability
def test_serve_supervises_its_own_engine_and_stops_it(tiny_llama_dir, tmp_path):
    port = free_port()
    engine_port = free_port()
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
                    "log_file": "vllm.log",
                },
                "gateway": {"port": port},
            }
        )
    )
    log = tmp_path / "serve.log"
    proc = start_serve(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log, 400)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        answer = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert answer.choices[0].message.content is not None
        assert (tmp_path / "vllm.log").stat().st_size > 0
        key = check_the_engine_is_no_side_door(f"http://127.0.0.1:{engine_port}", engine_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()
    for written in (log, tmp_path / "vllm.log"):
        assert key not in written.read_text(errors="replace"), f"the engine key is in {written}"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{engine_port}/health", timeout=2)
    assert engine_pids(engine_port) == []


def engine_pids(engine_port: int) -> list[int]:
    # `--` ends pgrep's options: without it the pattern is read as an option, and nothing found
    pattern = f"vllm.entrypoints.openai.api_server .*--port {engine_port}"
    found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split() if int(pid) != os.getpid()]


def check_the_engine_is_no_side_door(engine: str, engine_port: int) -> str:
    """Anyone on the host can reach the engine's port: without the generated key it must serve
    nothing but /health (vLLM's own --api-key leaves /invocations and /metrics open), and the
    key must not show in any process's command line. Returns the key (read from the server's
    environment, which only its own user can read)."""
    started = time.perf_counter()
    (pid,) = engine_pids(engine_port)
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    key = next(v for k, _, v in (e.partition(b"=") for e in environ) if k == b"VLLM_API_KEY")
    key = key.decode()
    assert len(key) >= 32
    every_argv = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert key not in every_argv and "--api-key" not in Path(f"/proc/{pid}/cmdline").read_text()
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    side_doors = [
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", chat),
        ("POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/tmp"}),
        ("POST", "/v1/unload_lora_adapter", {"lora_name": "x"}),
        ("POST", "/invocations", chat),  # vLLM's SageMaker route: chat outside /v1
        ("GET", "/metrics", None),
        ("POST", "/tokenize", {"model": "tiny", "prompt": "hi"}),
    ]
    refused = 0
    for method, route, body in side_doors:
        for auth in ({}, {"Authorization": "Bearer wrong"}):
            answer = httpx.request(method, engine + route, json=body, headers=auth, timeout=30)
            assert answer.status_code == 401, (method, route, answer.status_code, answer.text)
            refused += 1
    assert httpx.get(engine + "/health", timeout=10).status_code == 200
    own = httpx.get(engine + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert own.status_code == 200 and own.json()["data"][0]["id"] == "tiny"
    record(
        "Tenants and keys",
        "engine side door: direct requests to the supervised vLLM without its key",
        refused_401=refused,
        routes=len(side_doors),
        key_in_argv_or_logs=0,
        check_s=round(time.perf_counter() - started, 1),
    )
    return key


def test_serve_with_a_bad_model_folder_is_one_line(tmp_path):
    config = tmp_path / "hybrid.yaml"
    config.write_text(yaml.safe_dump({"engine": {"model": str(tmp_path / "missing")}}))
    result = hybrid(config, "serve")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "missing" in result.stderr
