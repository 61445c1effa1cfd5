"""The shared tiny-model helper that later tiers (PEFT, vLLM) build on."""

from __future__ import annotations

from tests.helpers.tiny_llama import build_tiny_llama, describe, weights_fingerprint


def test_tiny_llama_is_deterministic_and_vllm_shaped(tiny_llama_dir, tmp_path):
    config = describe(tiny_llama_dir)
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["head_dim"] == 64  # vLLM CPU attention rejects head_dim 16
    again = build_tiny_llama(tmp_path / "again")
    assert weights_fingerprint(again) == weights_fingerprint(tiny_llama_dir)
    other = build_tiny_llama(tmp_path / "other", seed=1)
    assert weights_fingerprint(other) != weights_fingerprint(tiny_llama_dir)


def test_tiny_llama_chats_with_its_own_template(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.shape[1]
