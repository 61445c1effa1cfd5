"""LoRA training on a tiny model: held-out loss drops, the folder is complete and vLLM-shaped,
an interrupted run leaves nothing in the output folder and resumes from its checkpoint."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from finetune.config import LoraSettings, TrainConfig
from finetune.data.schema import Example, Message
from finetune.errors import TrainingError
from finetune.manifest import base_fingerprint, read_manifest
from finetune.training import split_examples, train

VOICE = [
    "Ahoy, fellow owners! {x} sails on a steady keel.",
    "Trim the sails: {x} is our north star, fellow owners.",
    "Steady as she goes, fellow owners, {x} keeps us afloat.",
]


def style_examples(n: int = 48) -> list[Example]:
    topics = ["safety", "our people", "customers", "innovation", "the factory", "quality"]
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        out.append(
            Example(
                f"style.jsonl:{i + 1}",
                (
                    Message("user", f"What do you think about {topic}?"),
                    Message("assistant", VOICE[i % len(VOICE)].format(x=topic.capitalize())),
                ),
            )
        )
    return out


def config(tiny_llama_dir, out, **kw) -> TrainConfig:
    settings = dict(
        base_model=str(tiny_llama_dir),
        output_dir=out,
        epochs=20,
        batch_size=8,
        gradient_accumulation=1,
        learning_rate=1e-2,
        max_length=96,
        logging_steps=2,
        save_steps=4,
        validation_share=0.25,
        seed=7,
    )
    settings.update(kw)
    return TrainConfig(**settings)


def held_out_loss(model_dir, adapter_dir, examples) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.encoding import Collator, encode_examples

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    encoded, _ = encode_examples(examples, tokenizer, 96)
    batch = Collator(tokenizer.pad_token_id)(encoded)
    with torch.no_grad():
        return float(model(**batch).loss)


def test_training_lowers_held_out_loss_and_writes_a_complete_adapter(tiny_llama_dir, tmp_path):
    examples = style_examples()
    out = tmp_path / "ceo-voice"
    result = train(config(tiny_llama_dir, out), examples=examples, progress=False)
    assert result.adapter_dir == out
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "hybrid_adapter.json",
        "metrics.json",
        "loss_curve.png",
    } <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    assert not (tmp_path / ".ceo-voice.checkpoints").exists()

    _, held_out = split_examples(examples, 0.25, 7)
    before = held_out_loss(tiny_llama_dir, None, held_out)
    after = held_out_loss(tiny_llama_dir, out, held_out)
    assert after < 0.8 * before, (before, after)  # measured: 6.24 -> 4.36
    assert result.metrics["validation_loss"] == pytest.approx(after, rel=0.05)

    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 16
    assert sorted(adapter_config["target_modules"]) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]
    assert not adapter_config.get("modules_to_save")
    with safe_open(out / "adapter_model.safetensors", "pt") as fh:
        keys = list(fh.keys())
    assert keys and all("lora_A" in k or "lora_B" in k for k in keys)

    manifest = read_manifest(out)
    assert manifest["base_model"]["fingerprint"] == base_fingerprint(tiny_llama_dir)
    assert manifest["lora"]["rank"] == 8
    assert manifest["data"]["examples"] == len(examples)
    assert manifest["metrics"]["validation_loss"] == result.metrics["validation_loss"]
    assert {"torch", "transformers", "peft"} <= set(manifest["versions"])
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert any("loss" in h for h in history) and any("eval_loss" in h for h in history)


def test_same_seed_same_adapter(tiny_llama_dir, tmp_path):
    examples = style_examples(16)
    a = train(config(tiny_llama_dir, tmp_path / "a", epochs=1), examples=examples, progress=False)
    b = train(config(tiny_llama_dir, tmp_path / "b", epochs=1), examples=examples, progress=False)
    assert a.metrics["train_loss"] == b.metrics["train_loss"]


def test_interrupted_training_leaves_no_output_and_resumes(tiny_llama_dir, tmp_path, monkeypatch):
    from finetune import progress

    examples = style_examples()
    out = tmp_path / "adapter"
    original = progress.LiveLossBar.on_step_end

    def interrupt_at_step_5(self, args, state, control, **kw):
        if state.global_step == 5:
            raise KeyboardInterrupt
        return original(self, args, state, control, **kw)

    monkeypatch.setattr(progress.LiveLossBar, "on_step_end", interrupt_at_step_5)
    with pytest.raises(TrainingError) as info:
        train(config(tiny_llama_dir, out), examples=examples, progress=False)
    message = str(info.value)
    assert "interrupted" in message and "--resume" in message
    assert not out.exists() and not (tmp_path / "adapter.partial").exists()
    assert (tmp_path / ".adapter.checkpoints" / "checkpoint-4").is_dir()

    monkeypatch.setattr(progress.LiveLossBar, "on_step_end", original)
    resumed = train(config(tiny_llama_dir, out), examples=examples, progress=False, resume=True)
    assert out.is_dir() and resumed.metrics["steps"] > 5


def test_existing_output_is_not_overwritten_by_default(tiny_llama_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(
        TrainingError, match="already exists; choose another output_dir or pass --overwrite"
    ):
        train(config(tiny_llama_dir, out), examples=style_examples(12), progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_modules_to_save_is_allowed_with_a_warning(tiny_llama_dir, tmp_path, caplog):
    cfg = config(
        tiny_llama_dir, tmp_path / "mts", epochs=1, lora=LoraSettings(modules_to_save=("lm_head",))
    )
    train(cfg, examples=style_examples(12), progress=False)
    assert "vLLM may refuse" in caplog.text
