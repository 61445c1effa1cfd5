"""`hybrid serve CONFIG.yaml` and `hybrid adapter ...` as a user runs them: real subprocesses,
a real vLLM, the official openai client. One gateway attaches to the session's vLLM server
(remote_engines); one starts and supervises its own and must leave nothing behind on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.helpers.gateway import HYBRID, free_port, start_serve, wait_ready

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
                "remote_engines": {"urls": [vllm_engine.url]},
                "base_model": str(tiny_llama_dir),
                "adapters": {"registry": "registry"},
                "gateway": {"port": port},
            }
        )
    )
    log = tmp_path / "serve.log"
    proc = start_serve(config, log)
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
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{engine_port}/health", timeout=2)
    leftovers = subprocess.run(
        ["pgrep", "-f", f"--port {engine_port}"], capture_output=True, text=True
    ).stdout.split()
    assert [pid for pid in leftovers if int(pid) != os.getpid()] == []


def test_serve_with_a_bad_model_folder_is_one_line(tmp_path):
    config = tmp_path / "hybrid.yaml"
    config.write_text(yaml.safe_dump({"engine": {"model": str(tmp_path / "missing")}}))
    result = hybrid(config, "serve")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "missing" in result.stderr
