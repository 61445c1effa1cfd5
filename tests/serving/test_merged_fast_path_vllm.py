"""The merged fast path with two real vLLM servers: the session's engine (the LoRA path) and a
second one that the runtime `hybrid serve` builds starts itself for a `merged_engines` entry
without url: `voice@v1` merged into the tiny model (cached in the registry folder), served by a
supervised vLLM with the session engine's settings and the served names that prove the
version, its log beside the engine's. Through the gateway and the official openai client: the
merged engine answers the adapter's requests with PEFT's greedy tokens for v1, the same tokens
the LoRA path gives for v1; a promote moves the name to the LoRA path and back; a merged engine
configured for another version is refused at start; the runtime's stop stops it, and the
adapter falls back to the LoRA path.

One vLLM boot of its own (~60 s), in addition to the session's shared server."""

from __future__ import annotations

import httpx
import pytest

from serving.engine import MergedEngineConfig, RemoteEngineConfig
from serving.engine.procgroup import group_members
from serving.errors import ServingError
from serving.gateway import GatewayConfig, create_app
from serving.runtime import ServingRuntime
from tests.helpers.adapters import greedy_ids, peft_greedy, random_lora, served_greedy
from tests.helpers.gateway import ServerThread

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.timeout(900),
    pytest.mark.usefixtures("clean_vllm_engine"),
]

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def fast_path(vllm_engine, tiny_llama_dir, tmp_path_factory):
    """A gateway over the session engine and the merged engine for voice@v1 it started."""
    import torch

    from hybrid.config import AdapterSettings, HybridConfig
    from hybrid.runtime import build_runtime
    from serving.adapters import AdapterRegistry, describe_base
    from serving.runtime import AttachedEngine

    torch.set_num_threads(2)  # random_lora, the merge and PEFT's reference run here, beside vLLM
    root = tmp_path_factory.mktemp("merged")
    # alpha 128 on rank 8: the adapter dominates the logits, so greedy tokens have wide margins
    sources = {
        v: random_lora(tiny_llama_dir, root / "sources" / v, rank=8, seed=seed, alpha=128)
        for v, seed in (("v1", 31), ("v2", 32))
    }
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), max_rank=8)
    registry.register(sources["v1"], "voice", "v1")
    registry.register(sources["v2"], "voice", "v2", promote=False)
    config = HybridConfig(
        engine=vllm_engine.config,  # the settings a merged engine takes: float32, 1024 tokens, ...
        adapters=AdapterSettings(registry=root / "registry"),
        gateway=GatewayConfig(drain_timeout_s=60),
        merged_engines=(MergedEngineConfig(adapter="voice", version="v1"),),  # no url: start it
    )
    # attached: the session engine is the LoRA path (as a gateway worker attaches to its
    # parent's engine); the runtime starts only the merged engine
    live = build_runtime(config, attached=AttachedEngine.of(vllm_engine))

    def runtime(version: str) -> ServingRuntime:  # a merged engine that runs already (url)
        return ServingRuntime(
            registry_root=root / "registry",
            remote=RemoteEngineConfig(
                urls=(vllm_engine.url,), api_key=vllm_engine.api_key, timeout_s=120
            ),
            base_model=tiny_llama_dir,
            merged=[
                MergedEngineConfig(
                    adapter="voice", version=version, url=engine.url, api_key=engine.api_key
                )
            ],
        )

    try:
        live.start()
        engine = live.launched.processes["voice@v1"]
        print(f"\nmerged engine ready after {engine.last_ready_s:.1f} s (log: {engine.log_path})")
        with ServerThread(create_app(live.gateway_state())) as gateway:
            gateway.engine, gateway.live, gateway.runtime = engine, live, runtime
            gateway.sources = sources
            yield gateway
    finally:
        live.stop()


def admin(gateway, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, gateway.url + "/admin" + path, json=body, timeout=180)


def row(gateway, engine_name: str) -> dict:
    rows = admin(gateway, "GET", "/adapters").json()["adapters"]
    return next(r for r in rows if r["id"] == engine_name)


def models(engine) -> list[dict]:
    headers = {"Authorization": f"Bearer {engine.api_key}"}
    return httpx.get(engine.url + "/v1/models", headers=headers, timeout=30).json()["data"]


def greedy(gateway, model: str):
    answer = served_greedy(gateway.url + "/v1", model, PROMPT, NEW_TOKENS)
    prompt_ids, ids = greedy_ids(answer)
    return answer.model, prompt_ids, ids


def test_the_started_merged_engine_takes_the_engines_settings(fast_path, vllm_engine):
    engine = fast_path.engine
    assert engine.state == "ready"
    assert engine.log_path == vllm_engine.log_path.with_name("vllm.voice@v1.log")
    assert engine.url != vllm_engine.url and engine.api_key != vllm_engine.api_key
    config = engine.config
    assert (config.dtype, config.max_model_len, config.kv_cache_gib) == ("float32", 1024, 1)
    merged = fast_path.live.registry().root / "merged"
    assert config.model.startswith(f"{merged}/voice@v1.")  # the cached merge
    assert [card["id"] for card in models(engine)] == [
        "voice@v1",
        config.served_model_aliases[0],
    ]
    assert config.served_model_aliases[0].startswith("voice@v1+sha256:")


def test_the_merged_engine_serves_the_adapters_tokens_and_falls_back_to_lora(
    fast_path, tiny_llama_dir, vllm_engine
):
    model, prompt_ids, merged_ids = greedy(fast_path, "voice")
    assert model == "voice@v1"
    assert row(fast_path, "voice@v1")["served_via"] == "merged"
    assert row(fast_path, "voice@v1")["loaded_on"] == []  # the LoRA path was never taken
    assert merged_ids == peft_greedy(
        tiny_llama_dir, fast_path.sources["v1"], prompt_ids, NEW_TOKENS
    )

    assert admin(fast_path, "POST", "/adapters/voice/promote", {"version": "v2"}).status_code == 200
    model, _, v2_ids = greedy(fast_path, "voice")
    assert model == "voice@v2" and v2_ids != merged_ids
    model, _, lora_ids = greedy(fast_path, "voice@v1")  # pinned, not current: the LoRA path
    assert model == "voice@v1" and lora_ids == merged_ids
    v1 = row(fast_path, "voice@v1")
    assert v1["served_via"] == "lora" and v1["loaded_on"] == [vllm_engine.url]

    assert admin(fast_path, "POST", "/adapters/voice/promote", {"version": "v1"}).status_code == 200
    assert row(fast_path, "voice@v1")["served_via"] == "merged"

    with pytest.raises(ServingError) as info:  # a merged engine of v1 configured for v2
        fast_path.runtime("v2").start()
    assert str(info.value).startswith(
        f"merged engine {fast_path.engine.url} serves voice@v1, voice@v1+sha256:"
    )
    assert "as its base model, not 'voice@v2' (its first served name); start it with" in str(
        info.value
    )

    pid = fast_path.engine.pid
    fast_path.live.stop()  # the runtime stops the engine it started, and all of its processes
    assert fast_path.engine.state == "stopped" and group_members(pid) == []
    model, _, fallback_ids = greedy(fast_path, "voice")  # down: the LoRA path, nothing fails
    assert model == "voice@v1" and fallback_ids == merged_ids
    assert row(fast_path, "voice@v1")["served_via"] == "lora"
    assert vllm_engine.state == "ready"  # the engine it attached to was left alone
