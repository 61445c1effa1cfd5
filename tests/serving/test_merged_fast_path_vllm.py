"""The merged fast path with two real vLLM servers: the session's engine (the LoRA path) and a
second one serving `voice@v1` merged into the tiny model by `hybrid adapter merge`, started
with the served names the merge prints. Through the gateway and the official openai client:
the merged engine answers the adapter's requests with PEFT's greedy tokens for v1, the same
tokens the LoRA path gives for v1; a promote moves the name to the LoRA path and back; a
merged engine configured for another version is refused at start; a stopped one falls back.

One vLLM boot of its own (~60 s), in addition to the session's shared server."""

from __future__ import annotations

import httpx
import pytest

from serving.engine import EngineConfig, EngineProcess, MergedEngineConfig, RemoteEngineConfig
from serving.engine.config import RestartPolicy
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
    """A gateway over the session engine and a merged engine for voice@v1."""
    import torch

    from hybrid.adapters import merge
    from serving.adapters import AdapterRegistry, describe_base

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
    merged = merge(registry.resolve("voice@v1").adapter.path, root / "merged", dtype="float32")
    first, *aliases = merged.served_names()
    engine = EngineProcess(
        EngineConfig(
            model=str(merged.path),
            served_model_name=first,
            served_model_aliases=tuple(aliases),
            max_loras=1,
            max_lora_rank=8,
            max_model_len=1024,
            dtype="float32",
            kv_cache_gib=1,
            log_file=root / "merged-vllm.log",
            startup_timeout_s=400,
            restart=RestartPolicy(max_restarts=0),
        )
    )
    engine.start()
    print(f"\nmerged engine ready after {engine.last_ready_s:.1f} s (log: {engine.log_path})")

    def runtime(version: str) -> ServingRuntime:
        return ServingRuntime(
            registry_root=root / "registry",
            remote=RemoteEngineConfig(
                urls=(vllm_engine.url,), api_key=vllm_engine.api_key, timeout_s=120
            ),
            base_model=tiny_llama_dir,
            gateway=GatewayConfig(drain_timeout_s=60),
            merged=[
                MergedEngineConfig(
                    adapter="voice", version=version, url=engine.url, api_key=engine.api_key
                )
            ],
        )

    try:
        live = runtime("v1")
        live.start()
        with ServerThread(create_app(live.gateway_state())) as gateway:
            gateway.engine, gateway.runtime, gateway.sources = engine, runtime, sources
            yield gateway
    finally:
        engine.stop()


def admin(gateway, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, gateway.url + "/admin" + path, json=body, timeout=180)


def row(gateway, engine_name: str) -> dict:
    rows = admin(gateway, "GET", "/adapters").json()["adapters"]
    return next(r for r in rows if r["id"] == engine_name)


def greedy(gateway, model: str):
    answer = served_greedy(gateway.url + "/v1", model, PROMPT, NEW_TOKENS)
    prompt_ids, ids = greedy_ids(answer)
    return answer.model, prompt_ids, ids


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

    fast_path.engine.stop()  # down: requests go to the LoRA path, none fails
    model, _, fallback_ids = greedy(fast_path, "voice")
    assert model == "voice@v1" and fallback_ids == merged_ids
    assert row(fast_path, "voice@v1")["served_via"] == "lora"
