"""The supervisor's logic against a fake vLLM (tests/serving/fake_vllm.py), in seconds: start-up
failures quote the log, deaths are healed, adapters come back, no process is left behind.
The same behaviour against the real vLLM is in test_engine_vllm.py (marked `vllm`)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path

import pytest

from serving.engine import AdapterLedger, EngineConfig, EngineProcess, EngineSet, RestartPolicy
from serving.engine.procgroup import group_members
from serving.errors import (
    AdapterLoadError,
    EngineCrashed,
    EngineStartError,
    EngineUnavailable,
)
from tests.helpers.engine import served_adapters

FAKE = Path(__file__).with_name("fake_vllm.py")


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """An 'interpreter' whose `-m vllm.entrypoints.openai.api_server` is the fake server."""
    script = tmp_path / "python-with-fake-vllm"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def adapter(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    return folder


def config(fake_python: Path, model_dir: Path, tmp_path: Path, **overrides) -> EngineConfig:
    settings = dict(
        model=str(model_dir),
        served_model_name="base",
        python=fake_python,
        kv_cache_gib=1,
        log_file=tmp_path / "logs" / "vllm.log",
        startup_timeout_s=20,
        stop_timeout_s=3,
        watch_interval_s=0.1,
        restart=RestartPolicy(max_restarts=2, backoff_s=0.1, backoff_max_s=0.2),
    )
    settings.update(overrides)
    return EngineConfig(**settings)


def wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_restart_after_kill_reloads_adapters_and_stop_leaves_nothing(
    fake_python, model_dir, tmp_path
):
    environ_before = dict(os.environ)
    engine = EngineProcess(config(fake_python, model_dir, tmp_path))
    keep, doomed = adapter(tmp_path, "keep"), adapter(tmp_path, "doomed")

    async def scenario() -> AdapterLedger:
        engines = EngineSet.build(supervised=engine)
        ledger = engines.replicas[0].ledger
        assert ledger is not None and engine.on_launch == [ledger.restore]
        await engines.ensure_adapter("keep", keep)
        await engines.ensure_adapter("doomed", doomed)
        with pytest.raises(AdapterLoadError, match="No adapter found"):
            await engines.ensure_adapter("bad", tmp_path / "nowhere")
        assert ledger.adapters == {"keep": str(keep), "doomed": str(doomed)}
        (doomed / "adapter_config.json").unlink()  # will not load again after the restart

        url, old_group = engine.url, engine.pid
        assert len(group_members(old_group)) == 2  # the server and its "engine core"
        os.killpg(old_group, signal.SIGKILL)
        await asyncio.to_thread(wait_for, lambda: group_members(old_group) == [])
        await asyncio.to_thread(engine.wait_ready, 20)
        assert engine.restarts == 1 and engine.url == url and engine.pid != old_group
        assert group_members(old_group) == []
        # reloaded before the server counted as ready: no request needed to bring it back
        assert await engines.replicas[0].client.adapters() == {"keep": str(keep)}
        assert ledger.adapters == {"keep": str(keep)}
        assert "No adapter found" in ledger.lost["doomed"]
        assert "No adapter found" in str(engine.last_error)

        assert await engines.unload_adapter("keep") == [url]
        assert ledger.adapters == {}
        await engines.aclose()
        assert engine.on_launch == []
        return ledger

    with engine:
        assert engine.state == "ready" and engine.url.startswith("http://127.0.0.1:")
        assert dict(os.environ) == environ_before
        log = engine.log_path.read_text()
        assert "env VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in log
        assert "env VLLM_CPU_KVCACHE_SPACE=1" in log and "env HF_HUB_OFFLINE=1" in log
        asyncio.run(scenario())
        new_group = engine.pid
    assert engine.state == "stopped" and group_members(new_group) == []
    ledger = AdapterLedger(engine).attach()
    ledger.remember("keep", keep)
    with engine:  # a new start runs the hooks too
        assert served_adapters(engine) == {"keep": str(keep)}


def test_start_failure_quotes_the_cleaned_end_of_the_log(fake_python, model_dir, tmp_path):
    engine = EngineProcess(
        config(fake_python, model_dir, tmp_path, env={"FAKE_VLLM_MODE": "crash"})
    )
    with pytest.raises(EngineStartError) as info:
        engine.start()
    message = str(info.value)
    assert "exited with code 1 during start-up" in message
    assert f"log: {engine.log_path}" in message
    assert "User-specified max_model_len (4096) is greater than the derived" in message
    assert 'File "' not in message and "nanobind" not in message
    assert "Value error" in info.value.log_tail
    assert engine.state == "failed" and engine.pid and group_members(engine.pid) == []


def test_startup_timeout_kills_the_group(fake_python, model_dir, tmp_path):
    engine = EngineProcess(
        config(
            fake_python, model_dir, tmp_path, env={"FAKE_VLLM_MODE": "hang"}, startup_timeout_s=1.5
        )
    )
    started = time.monotonic()
    with pytest.raises(EngineStartError, match=r"was not ready after 2 s \(startup_timeout_s\)"):
        engine.start()
    assert time.monotonic() - started < 10
    log = engine.log_path.read_text()
    pid = int(log.split("fake vLLM pid=")[1].split()[0])
    assert group_members(pid) == []


def test_stop_kills_a_server_that_ignores_sigterm(fake_python, model_dir, tmp_path):
    engine = EngineProcess(
        config(
            fake_python,
            model_dir,
            tmp_path,
            env={"FAKE_VLLM_MODE": "ignore-term"},
            stop_timeout_s=1,
        )
    )
    engine.start(watch=False)
    group = engine.pid
    started = time.monotonic()
    engine.stop()
    assert 1 <= time.monotonic() - started < 10
    assert group_members(group) == []


def test_supervisor_gives_up_after_max_restarts(fake_python, model_dir, tmp_path):
    crash_flag = tmp_path / "crash-now"
    engine = EngineProcess(
        config(
            fake_python,
            model_dir,
            tmp_path,
            env={"FAKE_VLLM_CRASH_IF": str(crash_flag)},
            restart=RestartPolicy(max_restarts=2, backoff_s=0.05, backoff_max_s=0.1),
        )
    )
    engine.start()
    try:
        crash_flag.touch()  # every restart from now on fails
        group = engine.pid
        os.killpg(group, signal.SIGKILL)
        wait_for(lambda: group_members(group) == [])
        with pytest.raises(EngineCrashed) as info:
            engine.wait_ready(30)
        message = str(info.value)
        assert (
            "exited with code -9; the supervisor gave up after 2 restarts within 600 s" in message
        )
        assert "the last restart exited with code 1 during start-up" in message
        assert "User-specified max_model_len" in message
        assert engine.state == "failed" and engine.restarts == 2
    finally:
        engine.stop()


def test_refuses_missing_model_and_busy_port_before_launching(fake_python, model_dir, tmp_path):
    with pytest.raises(EngineStartError, match=r"model folder /nowhere/model does not exist"):
        EngineProcess(config(fake_python, model_dir, tmp_path, model="/nowhere/model")).start()
    with pytest.raises(EngineStartError, match=r"has no config\.json"):
        EngineProcess(config(fake_python, model_dir, tmp_path, model=str(tmp_path))).start()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        engine = EngineProcess(config(fake_python, model_dir, tmp_path, port=port))
        with pytest.raises(EngineStartError, match=f"port {port} on 127.0.0.1 is in use"):
            engine.start()
    with pytest.raises(EngineUnavailable, match="call start"):
        EngineProcess(config(fake_python, model_dir, tmp_path)).url  # noqa: B018
