"""Train/serve parity: an adapter trained by Hybrid's own trainer, served by a real vLLM (CPU,
fp32), gives the same greedy tokens as PEFT in-process on a fixed prompt set; and the prompt the
server renders is, token for token, the prefix the trainer computed loss after.

Uses the session's shared vLLM server on the tiny model (`vllm_engine`, ~60-80 s to start); the
adapter is unloaded again so the other `vllm` tests see the server as they expect.
"""

from __future__ import annotations

import pytest

from finetune.data.schema import Example, Message
from finetune.encoding import IGNORE_INDEX, encode_chat
from finetune.training import train
from tests.helpers.adapters import greedy_ids, greedy_tokens, load_peft, served_greedy
from tests.helpers.engine import load_adapter, served_adapters, unload_adapter
from tests.helpers.training import style_examples, tiny_train_config

pytestmark = pytest.mark.vllm

NEW_TOKENS = 16
ADAPTER = "parity-voice"
PROMPTS = [
    [{"role": "user", "content": "What do you think about safety?"}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What do you think about customers?"},
    ],
    [
        {"role": "user", "content": "What do you think about quality?"},
        {"role": "assistant", "content": "Steady as she goes, fellow owners."},
        {"role": "user", "content": "And about our people?"},
    ],
]


def served(engine, model: str, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(prompt ids, output ids) of a greedy chat completion through the official OpenAI SDK."""
    response = served_greedy(engine.openai_base_url, model, messages, NEW_TOKENS, engine.api_key)
    assert response.model == model
    return greedy_ids(response)


def test_trained_adapter_served_by_vllm_gives_pefts_greedy_tokens(
    vllm_engine, tiny_llama_dir, tmp_path
):
    from transformers import AutoTokenizer

    from serving.adapters import describe_base
    from serving.adapters.checks import check_adapter

    config = tiny_train_config(
        tiny_llama_dir,
        tmp_path / ADAPTER,
        epochs=10,
        logging_steps=5,
        save_steps=1000,
        validation_share=0,
        seed=3,
    )
    adapter = train(
        config, examples=style_examples(36, capitalize=False), progress=False
    ).adapter_dir
    facts = check_adapter(adapter, describe_base(tiny_llama_dir), vllm_engine.config.max_lora_rank)
    assert not facts.foreign and facts.rank == 8 and "down_proj" in facts.target_modules

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = load_peft(tiny_llama_dir, adapter)  # loaded once for every prompt

    def peft_greedy(prompt_ids: list[int]) -> list[int]:
        return greedy_tokens(model, prompt_ids, NEW_TOKENS)

    load_adapter(vllm_engine, ADAPTER, adapter)
    try:
        changed = 0
        for messages in PROMPTS:
            prompt_ids, answer = served(vllm_engine, ADAPTER, messages)
            _, base = served(vllm_engine, vllm_engine.config.base_model_name, messages)

            # the server's prompt is exactly what training rendered before the reply it learned
            # (earlier replies as context only, weight 0, so every prompt token is masked)
            context = tuple(Message(**m, weight=int(m["role"] != "assistant")) for m in messages)
            reply = Example("parity", (*context, Message("assistant", "Ahoy!")))
            trained = encode_chat(reply, tokenizer, max_length=512)
            n = len(prompt_ids)
            assert trained.input_ids[:n] == prompt_ids, messages
            assert set(trained.labels[:n]) == {IGNORE_INDEX} and trained.labels[n] != IGNORE_INDEX

            assert len(answer) == NEW_TOKENS
            assert answer == peft_greedy(prompt_ids), messages
            with model.disable_adapter():
                assert base == peft_greedy(prompt_ids), messages
            changed += answer != base
        assert changed >= len(PROMPTS) - 1  # the adapter is really applied by the server
    finally:
        unload_adapter(vllm_engine, ADAPTER)
    assert ADAPTER not in served_adapters(vllm_engine)
