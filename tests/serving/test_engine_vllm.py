"""The engine against a real vLLM server on the tiny model: one start for the whole session plus
one restart (kill -9), so the tier stays at ~2-3 minutes on a 2-core CPU. The server is shared
with every other `vllm` test; the kill and stop tests are marked `engine_teardown` and run last."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from serving.engine import EngineClient, EngineSet
from serving.engine.procgroup import group_members
from serving.errors import AdapterLoadError, AdapterNotLoaded
from tests.helpers.adapters import greedy_ids, peft_greedy, served_greedy
from tests.helpers.engine import served_adapters

# These tests start from an engine without adapters and follow each other (the adapter one
# test loads, the next one unloads).
pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("clean_vllm_engine")]

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 12


def chat(engine, model: str):
    """Greedy completion through the official OpenAI SDK; returns (prompt ids, output ids)."""
    response = served_greedy(engine.openai_base_url, model, PROMPT, NEW_TOKENS, engine.api_key)
    assert response.model == model and response.choices[0].message.content
    return greedy_ids(response)


def test_ready_and_lists_the_base_model(vllm_engine):
    assert vllm_engine.state == "ready"
    assert served_adapters(vllm_engine) == {}

    async def models():
        async with EngineClient(vllm_engine.url, api_key=vllm_engine.api_key) as client:
            await client.health()
            return await client.list_models()

    cards = asyncio.run(models())
    assert [(c.id, c.parent, c.max_model_len) for c in cards] == [("tiny-llama", None, 1024)]


def test_runtime_lora_changes_greedy_tokens_like_peft(vllm_engine, tiny_llama_dir, lora_dir):
    prompt_ids, base_tokens = chat(vllm_engine, vllm_engine.config.base_model_name)
    assert len(base_tokens) == NEW_TOKENS

    async def load():
        async with EngineClient(vllm_engine.url, api_key=vllm_engine.api_key) as client:
            await client.load_lora_adapter("style", lora_dir)
            return await client.adapters()

    assert asyncio.run(load()) == {"style": str(lora_dir)}
    adapter_prompt_ids, adapter_tokens = chat(vllm_engine, "style")
    assert adapter_prompt_ids == prompt_ids
    assert adapter_tokens != base_tokens
    assert adapter_tokens == peft_greedy(tiny_llama_dir, lora_dir, prompt_ids, NEW_TOKENS)


def test_unload_then_the_adapter_is_gone(vllm_engine):
    import openai

    async def unload():
        async with EngineClient(vllm_engine.url, api_key=vllm_engine.api_key) as client:
            await client.unload_lora_adapter("style")
            assert await client.adapters() == {}
            with pytest.raises(AdapterNotLoaded, match="adapter 'style' is not loaded"):
                await client.unload_lora_adapter("style")

    asyncio.run(unload())
    with pytest.raises(openai.NotFoundError, match="The model `style` does not exist"):
        chat(vllm_engine, "style")


def test_bad_folders_raise_adapter_load_errors_with_vllms_reason(vllm_engine, tmp_path, lora_dir):
    from tests.helpers.adapters import random_lora

    missing = tmp_path / "no-such-adapter"
    too_big = random_lora(vllm_engine.config.model, tmp_path / "rank16", rank=16)

    async def load(name: str, folder) -> str:
        engines = EngineSet.build(supervised=vllm_engine)
        try:
            with pytest.raises(AdapterLoadError) as info:
                await engines.ensure_adapter(name, folder)
            assert engines.replicas[0].ledger.adapters == {}  # nothing to reload after a restart
        finally:
            await engines.aclose()
        return str(info.value)

    message = asyncio.run(load("ghost", missing))
    assert f"could not load adapter 'ghost' from {missing}" in message
    assert "404 NotFoundError: Loading lora ghost failed: No adapter found" in message
    assert "adapter_config.json and adapter_model.safetensors" in message

    message = asyncio.run(load("big", too_big))
    assert "LoRA rank 16 is greater than max_lora_rank 8" in message
    assert "larger max_lora_rank" in message
    assert served_adapters(vllm_engine) == {}


def test_engine_set_loads_on_demand_into_the_supervised_server(vllm_engine, lora_dir):
    async def scenario():
        engines = EngineSet.build(supervised=vllm_engine)
        await engines.refresh()
        replica = await engines.ensure_adapter("voice", lora_dir)
        assert replica.url == vllm_engine.url
        assert await replica.client.adapters() == {"voice": str(lora_dir)}
        assert replica.ledger.adapters == {"voice": str(lora_dir)}  # reloaded after a restart
        assert replica.ledger.restore in vllm_engine.on_launch
        await engines.aclose()
        assert replica.ledger.restore not in vllm_engine.on_launch

    asyncio.run(scenario())


@pytest.mark.engine_teardown
def test_kill_9_of_the_group_is_noticed_restarted_and_adapters_come_back(vllm_engine, lora_dir):
    """The engine set's ledger loads its adapters again, through the engine client, before
    the restarted server counts as ready."""

    async def scenario() -> None:
        engines = EngineSet.build(supervised=vllm_engine)
        ledger = engines.replicas[0].ledger
        await engines.refresh()  # this test runs last: the module's others are long done
        for name in ("style", "voice"):
            await engines.ensure_adapter(name, lora_dir)
        _, before = await asyncio.to_thread(chat, vllm_engine, "style")
        url, group = vllm_engine.url, vllm_engine.pid
        assert len(group_members(group)) >= 3  # API server, engine core, worker(s)

        restarts = vllm_engine.restarts  # an earlier crash is that test's failure, not ours
        killed = time.monotonic()
        os.killpg(group, signal.SIGKILL)
        deadline = killed + 30
        while vllm_engine.state == "ready" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert vllm_engine.state == "restarting", "the watchdog did not notice the death"
        noticed = time.monotonic() - killed
        await asyncio.to_thread(vllm_engine.wait_ready, 400)
        print(
            f"\nnoticed after {noticed:.1f} s, ready again {time.monotonic() - killed:.1f} s "
            "after kill"
        )

        assert vllm_engine.restarts == restarts + 1
        assert vllm_engine.url == url and vllm_engine.pid != group
        assert group_members(group) == []
        # everything the set had loaded is back, before the first request (other engine sets
        # of the session, e.g. a gateway's, bring their own back too)
        assert ledger.adapters == {"voice": str(lora_dir), "style": str(lora_dir)}
        served = await engines.replicas[0].client.adapters()
        assert ledger.adapters.items() <= served.items()
        assert ledger.lost == {} and vllm_engine.last_error is None
        assert (await asyncio.to_thread(chat, vllm_engine, "style"))[1] == before
        await engines.aclose()

    asyncio.run(scenario())


@pytest.mark.engine_teardown(order=2)
def test_stop_leaves_no_process_behind(vllm_engine):
    group = vllm_engine.pid
    started = time.monotonic()
    vllm_engine.stop()
    print(f"\nstopped in {time.monotonic() - started:.1f} s")
    assert vllm_engine.state == "stopped"
    assert group_members(group) == []
