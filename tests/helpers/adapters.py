"""LoRA adapters for tests: trained-looking random weights in PEFT format, fast."""

from __future__ import annotations

from pathlib import Path

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def random_lora(
    base_dir: Path,
    out_dir: Path,
    *,
    rank: int = 8,
    seed: int = 1,
    targets: list[str] | None = None,
    alpha: float | None = None,
) -> Path:
    """A PEFT LoRA with non-zero random weights (so it visibly changes the output). A large
    `alpha` makes the adapter dominate the logits, so its greedy tokens have clear margins."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        target_modules=targets or TARGETS,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def load_peft(base_dir, lora_dir):
    """Base model + adapter in this process (fp32, eval mode): the reference for parity."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return PeftModel.from_pretrained(model, lora_dir).eval()


def greedy_tokens(model, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """Exactly `new_tokens` greedy tokens after `prompt_ids`."""
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
        )
    return out[0, len(prompt_ids) :].tolist()


def peft_greedy(base_dir, lora_dir, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """Greedy decode in-process with PEFT (fp32): the reference for serving parity."""
    return greedy_tokens(load_peft(base_dir, lora_dir), prompt_ids, new_tokens)


def served_greedy(
    base_url: str, model: str, messages: list[dict], new_tokens: int, api_key: str = "unused"
):
    """A greedy chat completion of exactly `new_tokens` tokens through the official OpenAI SDK,
    with vLLM's token ids (`greedy_ids` reads them)."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    return client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=new_tokens,
        temperature=0,
        # vLLM extensions: token ids back, and no early stop so every run has new_tokens tokens
        extra_body={"return_token_ids": True, "min_tokens": new_tokens},
    )


def greedy_ids(response) -> tuple[list[int], list[int]]:
    """(prompt ids, output ids) of a `served_greedy` answer."""
    prompt_ids = (response.model_extra or {})["prompt_token_ids"]
    return prompt_ids, (response.choices[0].model_extra or {})["token_ids"]
