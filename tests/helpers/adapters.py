"""LoRA adapters for tests: trained-looking random weights in PEFT format, fast."""

from __future__ import annotations

from pathlib import Path

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def random_lora(
    base_dir: Path, out_dir: Path, *, rank: int = 8, seed: int = 1, targets: list[str] | None = None
) -> Path:
    """A PEFT LoRA with non-zero random weights (so it visibly changes the output)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=targets or TARGETS,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
