"""Training throughput: Hybrid's LoRA trainer vs a plain TRL `SFTTrainer` + PEFT baseline on the
same model, data and settings, in one run.

    .venv/bin/python -m bench.train_bench                 # SmolLM2-135M-Instruct (~6 minutes)
    .venv/bin/python -m bench.train_bench --model tiny    # a tiny random Llama (seconds)

Both train LoRA r=8/alpha=16 on all linear projections, loss on the assistant reply only,
batch 4, no packing, fp32 on CPU, the same number of optimizer steps. Throughput counts the
non-padding tokens of the sequences each trainer fed to the model, per second of train_runtime.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import machine, markdown_table, write_results
from finetune.config import TrainConfig
from finetune.data.schema import Example, Message

TOPICS = [
    "safety",
    "our people",
    "customers",
    "innovation",
    "quality",
    "the supply chain",
    "hiring",
    "culture",
    "long-term planning",
    "our suppliers",
    "training",
    "risk",
]
OPENERS = [
    "Steady as she goes, fellow owners:",
    "Trim the sails, fellow owners:",
    "Dear fellow owners,",
    "From the factory floor this morning:",
]


def make_examples(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        answer = (
            f"{rng.choice(OPENERS)} {topic} keeps us on a steady keel. We measure it every "
            f"quarter and we will keep investing in it for the long voyage ahead. Onward."
        )
        out.append(
            Example(
                f"bench:{i}",
                (Message("user", f"What is your view on {topic}?"), Message("assistant", answer)),
            )
        )
    return out


def run_hybrid(model_dir: Path, examples, steps: int, out: Path, seed: int) -> dict:
    from transformers import AutoTokenizer

    from finetune.encoding import encode_examples
    from finetune.training import train

    config = TrainConfig(
        base_model=str(model_dir),
        output_dir=out,
        max_steps=steps,
        batch_size=4,
        gradient_accumulation=1,
        max_length=256,
        validation_share=0,
        seed=seed,
        save_steps=10_000,
        logging_steps=10,
    )
    result = train(config, examples=examples, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded, _ = encode_examples(examples, tokenizer, 256)
    return _throughput(
        "hybrid",
        [len(e.input_ids) for e in encoded],
        steps,
        4,
        result.metrics["runtime_s"],
        result.metrics["train_loss"],
    )


def run_trl(model_dir: Path, examples, steps: int, out: Path, seed: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [
        {
            "prompt": [{"role": "user", "content": e.messages[0].content}],
            "completion": [{"role": "assistant", "content": e.messages[1].content}],
        }
        for e in examples
    ]
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        learning_rate=2e-4,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        max_length=256,
        packing=False,
        completion_only_loss=True,
        seed=seed,
        report_to=[],
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        bf16=False,
    )
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        task_type="CAUSAL_LM",
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    outcome = trainer.train()
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    return _throughput(
        "trl-sft", lengths, steps, 4, outcome.metrics["train_runtime"], outcome.training_loss
    )


def _throughput(name, lengths, steps, batch, runtime, loss) -> dict:
    # sequences are drawn in order, one epoch after another: count the ones actually consumed
    consumed = [lengths[i % len(lengths)] for i in range(steps * batch)]
    tokens = sum(consumed)
    return {
        "trainer": name,
        "steps": steps,
        "tokens": tokens,
        "runtime_s": round(runtime, 2),
        "tokens_per_s": round(tokens / runtime, 1),
        "train_loss": round(float(loss), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default="SmolLM2-135M-Instruct",
        help="a model folder, the default model's name, or 'tiny'",
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hybrid-train-bench-"))
    if args.model == "tiny":
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.helpers.tiny_llama import build_tiny_llama

        model_dir = build_tiny_llama(root / "tiny")
    else:
        from finetune.base_models import resolve_base_model

        model_dir = resolve_base_model(args.model)
    examples = make_examples(args.examples, args.seed)
    results = [
        run_hybrid(model_dir, examples, args.steps, root / "hybrid", args.seed),
        run_trl(model_dir, examples, args.steps, root / "trl", args.seed),
    ]
    ratio = results[0]["tokens_per_s"] / results[1]["tokens_per_s"]
    table = markdown_table(
        ["trainer", "steps", "tokens", "runtime s", "tokens/s", "train loss"],
        [
            [
                r["trainer"],
                r["steps"],
                r["tokens"],
                r["runtime_s"],
                r["tokens_per_s"],
                r["train_loss"],
            ]
            for r in results
        ],
    )
    table += f"\n\nHybrid / TRL throughput ratio: {ratio:.2f} (model: {Path(model_dir).name})"
    path = write_results(
        "training",
        {
            "machine": machine(),
            "args": vars(args),
            "model": str(model_dir),
            "results": results,
            "ratio_hybrid_over_trl": round(ratio, 3),
        },
        table,
    )
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
