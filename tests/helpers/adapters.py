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


def peft_greedy(base_dir, lora_dir, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """Greedy decode in-process with PEFT (fp32): the reference for serving parity."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, lora_dir).eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
        )
    return out[0, len(prompt_ids) :].tolist()
