"""Merged engines that `hybrid serve` starts itself (`merged_engines` entries without url), in
seconds and without vLLM: the config's one-line refusals, the merge cache (reused on a restart,
merged again for other adapter files, never a half folder a killed merge left), the engine
settings a merged engine takes from the engine, and a merge or a start that fails leaving the
gateway up with the version on the LoRA path. Two real vLLM servers, the second started by this
code path, run in test_merged_fast_path_vllm.py."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from hybrid.adapters import Merged
from hybrid.config import AdapterSettings, HybridConfig
from hybrid.errors import ConfigError
from hybrid.merged import cached_merge, merged_engine_config, recorded_digest
from serving.adapters.files import adapter_digest
from serving.engine import EngineConfig, MergedEngineConfig
from serving.gateway import create_app
from tests.serving.fake_engine import FakeEngine
from tests.serving.test_gateway import MESSAGES


@pytest.fixture
def registry(voice_registry):
    return voice_registry  # conftest: voice v1 (current, adapter a) and v2 (adapter b)


def load(tmp_path: Path, text: str) -> HybridConfig:
    from hybrid.config import load_config

    path = tmp_path / "hybrid.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def test_the_config_refuses_merged_engines_to_start_that_cannot_be_started_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(
            tmp_path,
            """
            merged_engines:
              - {adapter: voice, version: v1, url: http://m:8001, port: 8002}
              - {adapter: voice, version: v2, api_key: secret}
            """,
        )
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert (
        "port is for a merged engine hybrid serve starts (no url), but http://m:8001 runs "
        "already; drop port (or drop url to have it started)"
    ) in message
    assert (
        "api_key is the key of a server you started (url), but voice@v2 has no url: hybrid "
        "serve starts it with a secret of its own; drop api_key or add url"
    ) in message
    assert "secret" not in message.replace("a secret of its own", "")  # the key is not echoed

    with pytest.raises(ConfigError) as info:
        load(
            tmp_path,
            """
            remote_engines: {urls: ['http://10.0.0.5:8000']}
            merged_engines:
              - {adapter: voice, version: v1}
              - {adapter: voice, version: v1, port: 8003}
            """,
        )
    message = str(info.value)
    assert "merged_engines starts voice@v1 more than once (entries without url)" in message
    assert (
        "merged_engines: voice@v1 has no url, so hybrid serve would start it with the "
        "settings of `engine`, but only remote_engines are configured; add url"
    ) in message

    config = load(
        tmp_path,
        """
        merged_engines:
          - {adapter: voice, version: v1, port: 8003}
          - {adapter: voice, version: v1, url: 'http://m:8001/'}
        """,
    )
    started, running = config.merged_engines
    assert (started.started_here, started.url, started.port) == (True, None, 8003)
    assert (running.started_here, running.url) == (False, "http://m:8001")


def test_the_example_config_in_hybrid_config_is_valid():
    import hybrid.config
    from hybrid.config_files import validate

    example = hybrid.config.__doc__.split("::", 1)[1]
    config = validate(HybridConfig, yaml.safe_load(textwrap.dedent(example)), "example")
    assert [(m.engine_name, m.started_here) for m in config.merged_engines] == [
        ("support-voice@v3", True),
        ("sales-voice@v2", False),
    ]


def test_a_merged_engine_takes_the_engines_settings_and_a_port_name_key_and_log_of_its_own(
    tmp_path,
):
    engine = EngineConfig(
        model="/models/base",
        served_model_name="base",
        max_loras=4,
        max_cpu_loras=8,
        max_model_len=2048,
        dtype="bfloat16",
        kv_cache_gib=2,
        api_key="engine-key",
        tool_call_parser="hermes",
        extra_args=("--enforce-eager",),
        env={"A": "1"},
        log_file=tmp_path / "logs" / "vllm.log",
        startup_timeout_s=120,
    )
    digest = "ab" * 32
    entry = MergedEngineConfig(adapter="voice", version="v3", port=8005)
    config = merged_engine_config(engine, entry, Merged(tmp_path / "m", digest, "voice@v3"))
    assert (config.model, config.served_model_name) == (str(tmp_path / "m"), "voice@v3")
    assert config.served_model_aliases == ("voice@v3+sha256:abababababababab",)
    assert (config.port, config.api_key, config.max_loras, config.max_cpu_loras) == (
        8005,
        None,
        1,
        None,
    )
    assert config.log_file == tmp_path / "logs" / "vllm.voice@v3.log"
    assert (config.max_model_len, config.dtype, config.kv_cache_gib) == (2048, "bfloat16", 2)
    assert (config.tool_call_parser, config.extra_args, config.env) == (
        "hermes",
        ("--enforce-eager",),
        {"A": "1"},
    )
    assert config.startup_timeout_s == 120
    free = merged_engine_config(
        engine.model_copy(update={"log_file": None}),
        MergedEngineConfig(adapter="voice", version="v3"),
        Merged(tmp_path / "m", digest, "voice@v3"),
    )
    assert (free.port, free.log_file) == (0, None)  # a free port; a temporary log, as the engine's


def test_the_merge_is_cached_by_adapter_digest(registry, adapter_dirs, tiny_llama_dir, monkeypatch):
    import hybrid.merged

    first = cached_merge(registry, "voice@v2", tiny_llama_dir, "float32", threads=1)
    digest = adapter_digest(adapter_dirs["b"])
    assert first.digest == digest and recorded_digest(first.path) == digest
    assert first.path == registry.root / "merged" / f"voice@v2.{digest[:16]}.float32"
    assert (first.path / "config.json").is_file()

    def no_merge(*args, **kwargs):
        raise AssertionError("merged again although the cache holds this merge")

    with monkeypatch.context() as patch:  # a restart: the cached folder, no merge
        patch.setattr(hybrid.merged, "merge", no_merge)
        again = cached_merge(registry, "voice@v2", tiny_llama_dir, "float32", threads=1)
    assert again == first

    # voice@v2 registered again from other files: another digest, merged anew
    registry.remove("voice", "v2")
    registry.register(adapter_dirs["a"], "voice", "v2", promote=False)
    changed = cached_merge(registry, "voice@v2", tiny_llama_dir, "float32", threads=1)
    assert changed.digest == adapter_digest(adapter_dirs["a"]) != digest
    assert changed.path != first.path and recorded_digest(changed.path) == changed.digest


def test_a_killed_merge_leaves_no_half_folder_that_is_reused(registry, tiny_llama_dir):
    """kill -9 while the merged weights are being written; the next start merges again."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import transformers.modeling_utils as modeling
        from hybrid.merged import cached_merge
        from serving.adapters import AdapterRegistry, describe_base

        def hang(tensors, filename, metadata=None):  # half a file, then wait to be killed
            Path(filename).write_bytes(b"partial")
            print("writing", flush=True)
            time.sleep(600)

        modeling.safe_save_file = hang
        base = Path({str(tiny_llama_dir)!r})
        registry = AdapterRegistry(Path({str(registry.root)!r}), describe_base(base), 16)
        cached_merge(registry, "voice@v1", base, "float32", threads=1)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        lines = iter(proc.stdout.readline, "")  # until the merge writes its weights
        assert any(line.strip() == "writing" for line in lines), "the merge never wrote"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    digest = adapter_digest(registry.resolve("voice@v1").adapter.path)
    out = registry.root / "merged" / f"voice@v1.{digest[:16]}.float32"
    half = out.with_name(out.name + ".partial")
    assert half.is_dir() and not out.exists()  # the killed merge left only its .partial folder

    merged = cached_merge(registry, "voice@v1", tiny_llama_dir, "float32", threads=1)
    assert merged.path == out and recorded_digest(out) == digest and not half.exists()
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")  # whole: the half file was not reused
    assert "model.embed_tokens.weight" in weights


def test_a_failed_merge_or_start_keeps_the_gateway_up_on_the_lora_path(
    registry, tiny_llama_dir, caplog
):
    from hybrid.runtime import build_runtime
    from serving.runtime import AttachedEngine
    from tests.helpers.gateway import ServerThread

    stored_v2 = registry.resolve("voice@v2").adapter.path / "adapter_model.safetensors"
    stored_v2.write_bytes(b"not safetensors")  # voice@v2 cannot be merged
    lora = FakeEngine(base="tiny-llama")
    with ServerThread(lora.app) as lora_server:
        config = HybridConfig(
            engine=EngineConfig(model=str(tiny_llama_dir), max_lora_rank=16, dtype="float32"),
            adapters=AdapterSettings(registry=registry.root),
            merged_engines=(
                # its port is taken (by the LoRA engine): the start fails at once, no vLLM runs
                MergedEngineConfig(adapter="voice", version="v1", port=lora_server.port),
                MergedEngineConfig(adapter="voice", version="v2"),
            ),
        )
        attached = AttachedEngine(lora_server.url, "key", "tiny-llama", 16)
        with caplog.at_level(logging.ERROR):
            runtime = build_runtime(config, attached=attached)  # v1 merges, v2 does not
            assert [launch.entry.engine_name for launch in runtime.launched.launches] == [
                "voice@v1"
            ]
            runtime.start()  # v1's engine does not start: logged, not raised
        try:
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 2
            assert errors[0].startswith(
                "merging voice@v2 for its merged engine failed, voice@v2 keeps the LoRA path: "
                "SafetensorError: "
            )
            assert errors[1].startswith(
                "merged engine for voice@v1 did not start, voice@v1 keeps the LoRA path: port "
                f"{lora_server.port} on 127.0.0.1 is in use"
            )
            assert runtime.merged_engines() == []
            assert runtime.launched.processes["voice@v1"].state == "failed"
            with TestClient(create_app(runtime.gateway_state())) as client:
                body = {"model": "voice", "messages": MESSAGES}
                answer = client.post("/v1/chat/completions", json=body)
                assert answer.status_code == 200 and answer.json()["model"] == "voice@v1"
                assert [r["model"] for r in lora.requests] == ["voice@v1"]  # the LoRA path
                rows = client.get("/admin/adapters").json()["adapters"]
                assert {r["id"]: r["served_via"] for r in rows} == {
                    "voice@v1": "lora",
                    "voice@v2": "lora",
                }
        finally:
            runtime.stop()


def test_the_runtime_refuses_a_merged_engine_without_url_and_without_a_launch(tiny_llama_dir):
    from serving.runtime import ServingRuntime

    with pytest.raises(ValueError) as info:
        ServingRuntime(
            registry_root=Path("unused"),
            engine=EngineConfig(model=str(tiny_llama_dir)),
            merged=[MergedEngineConfig(adapter="voice", version="v1")],
        )
    assert str(info.value) == (
        "merged engines for voice@v1 have no url; pass them in launch_merged with the engine "
        "config to start them"
    )
