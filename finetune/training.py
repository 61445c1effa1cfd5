"""LoRA training with transformers + PEFT: examples in, a checked adapter folder out.

The output folder appears only when training succeeds (it is written as `<output>.partial` and
renamed); checkpoints for `resume` live beside it in `.<output>.checkpoints/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from finetune.base_models import resolve_base_model
from finetune.config import ALL_LINEAR, TrainConfig
from finetune.data.schema import Example
from finetune.encoding import Collator, EncodedExample, encode_examples
from finetune.errors import FinetuneError, TrainingError, TrainingInterrupted
from finetune.folders import staged_folder
from finetune.manifest import BaseModelInfo, build_manifest, write_manifest
from finetune.progress import LiveLossBar
from finetune.reporting import plot_loss_curve

log = logging.getLogger(__name__)

SPLIT_FILE = "data_split.json"
"""Origins (file:line) of the training and validation examples, so `hybrid eval` can tell
seen from held-out prompts."""


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    metrics: dict
    manifest: dict


class _ListDataset:
    def __init__(self, items: list[EncodedExample]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> EncodedExample:
        return self.items[index]


def data_fingerprint(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        payload = (
            [ex.text] if not ex.is_chat else [(m.role, m.content, m.weight) for m in ex.messages]
        )
        digest.update(json.dumps(payload, ensure_ascii=False).encode())
    return digest.hexdigest()


def split_examples(
    examples: list[Example], share: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Hold out `share` of the examples (at least 1 when there are 10 or more), by seed."""
    if share <= 0 or len(examples) < 10:
        return list(examples), []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * share))
    val = sorted(order[:n_val])
    held = set(val)
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in val]


def linear_module_names(model) -> list[str]:
    """Short names of every linear projection but the output head (what `all-linear` means).

    Short names (q_proj, ..., down_proj) rather than PEFT's resolved full paths keep the
    adapter_config.json readable and portable to servers that match modules by suffix.
    """
    import torch

    names = set()
    for name, module in model.named_modules():
        short = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear) and short not in ("lm_head", "score"):
            names.add(short)
    return sorted(names)


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint. transformers writes `trainer_state.json` last, so a run
    killed while saving leaves a folder without it; resuming from that one would fail."""
    found = [
        p
        for p in checkpoint_dir.glob("checkpoint-*")
        if p.name.rsplit("-", 1)[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(found, key=lambda p: int(p.name.rsplit("-", 1)[-1]), default=None)


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was saved at (from its trainer_state.json)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("global_step", 0))


def load_training_examples(config: TrainConfig) -> list[Example]:
    from finetune.data import load_dataset, mix_replay

    examples = load_dataset(list(config.data), format=config.data_format)
    if config.replay is not None and config.replay.share > 0:
        replay = load_dataset(list(config.replay.paths), format=config.replay.format)
        examples = mix_replay(examples, replay, config.replay.share, config.seed)
    return examples


def training_threads(setting: int | str, sample_s: float = 1.0) -> int:
    """Torch threads for a training run (0: leave torch's default): `auto` takes the CPUs this
    process may use minus those other processes keep busy, at least one."""
    if setting != "auto":
        return int(setting)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) - round(busy_cpus(sample_s)))


def busy_cpus(sample_s: float) -> float:
    """How many CPUs other processes use now: the machine's busy share over `sample_s` seconds
    while this process waits (psutil), in CPUs. Not the load average: its 1-minute mean still
    counts this process's own work of the minute before (building a knowledge base, installing),
    which made a quiet 2-core machine train on one thread, at half speed."""
    import psutil

    return psutil.cpu_percent(interval=sample_s) / 100 * (psutil.cpu_count() or 1)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    examples: list[Example] | None = None,
) -> TrainResult:
    """Train a LoRA adapter as configured.

    Args:
        resume: continue from the newest checkpoint of an interrupted run with the same output.
        overwrite: replace an existing adapter folder at `output_dir` (only once training succeeds).
        examples: already loaded examples (e.g. built by hybrid/ from a knowledge base) instead
            of reading `config.data`.
    Raises:
        DatasetError: the data cannot be read or encoded.
        BaseModelError: the base model cannot be found.
        TrainingError: training failed or was interrupted (checkpoints are kept for `resume`).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
    from transformers import set_seed as hf_set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    output = config.output_dir.expanduser()
    if output.exists() and not overwrite:
        raise TrainingError(
            f"output folder {output} already exists; choose another output_dir or pass --overwrite"
        )
    checkpoints = config.checkpoint_dir.expanduser()
    resume_from = last_checkpoint(checkpoints) if resume else None
    if resume and resume_from is None:
        raise TrainingError(f"nothing to resume: no checkpoint in {checkpoints}")
    if not resume and checkpoints.exists():
        shutil.rmtree(checkpoints)

    threads = training_threads(config.threads)
    if threads:
        torch.set_num_threads(threads)
    base_dir = resolve_base_model(config.base_model, config.cache_dir.expanduser())
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if examples is None:
        examples = load_training_examples(config)
    train_examples, val_examples = split_examples(examples, config.validation_share, config.seed)
    train_set, dropped = encode_examples(train_examples, tokenizer, config.max_length)
    val_set, _ = encode_examples(val_examples, tokenizer, config.max_length)
    if not train_set:
        raise TrainingError(
            "no trainable examples left after encoding (all assistant turns masked?)"
        )
    if dropped:
        log.warning("%d examples had no trainable tokens and were skipped", len(dropped))

    hf_set_seed(config.seed)
    dtype = torch.bfloat16 if config.dtype == "bfloat16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    targets = config.lora.target_modules
    lora = LoraConfig(
        r=config.lora.rank,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=linear_module_names(model) if targets == ALL_LINEAR else list(targets),
        modules_to_save=list(config.lora.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )
    if config.lora.modules_to_save:
        log.warning(
            "modules_to_save=%s: the adapter will carry full copies of these modules; vLLM may "
            "refuse to load it",
            list(config.lora.modules_to_save),
        )
    model = get_peft_model(model, lora)

    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        logging_steps=config.logging_steps,
        eval_strategy="steps" if val_set else "no",
        eval_steps=config.logging_steps * 2 if val_set else None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.dtype == "bfloat16",
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset(train_set),
        eval_dataset=_ListDataset(val_set) if val_set else None,
        data_collator=Collator(tokenizer.pad_token_id),
        callbacks=[LiveLossBar(enabled=progress)],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)

    try:
        with staged_folder(output) as partial:
            start_step = checkpoint_step(resume_from) if resume_from else 0  # read before: the
            # trainer may delete old checkpoints as it saves new ones
            outcome = trainer.train(
                resume_from_checkpoint=str(resume_from) if resume_from else None
            )
            metrics = {
                "train_loss": round(float(outcome.training_loss), 5),
                "steps": int(trainer.state.global_step),
                "steps_run": int(trainer.state.global_step) - start_step,
                "resumed_from_step": start_step,
                "epochs": round(float(trainer.state.epoch or 0), 3),
                "train_examples": len(train_examples),
                "validation_examples": len(val_examples),
                "train_sequences": len(train_set),
                "trained_tokens": sum(item.trained_tokens for item in train_set),
                "runtime_s": round(float(outcome.metrics.get("train_runtime", 0.0)), 2),
            }
            if val_set:
                val_loss = float(trainer.evaluate()["eval_loss"])
                metrics["validation_loss"] = round(val_loss, 5)
                metrics["validation_perplexity"] = round(
                    float(torch.exp(torch.tensor(val_loss))), 4
                )
            model.save_pretrained(partial, safe_serialization=True)
            history = trainer.state.log_history
            (partial / "metrics.json").write_text(
                json.dumps({"final": metrics, "history": history}, indent=2) + "\n"
            )
            plot_loss_curve(history, partial / "loss_curve.png", title=output.name)
            (partial / SPLIT_FILE).write_text(
                json.dumps(
                    {
                        "train": [e.origin for e in train_examples],
                        "validation": [e.origin for e in val_examples],
                    },
                    indent=1,
                )
                + "\n"
            )
            manifest = build_manifest(
                name=output.name,
                base=BaseModelInfo.of(config.base_model, base_dir),
                adapter_dir=partial,
                data={
                    "fingerprint": data_fingerprint(examples),
                    "examples": len(examples),
                    "paths": [str(p) for p in config.data],
                    "format": config.data_format,
                },
                training=json.loads(
                    config.model_dump_json(
                        include={
                            "learning_rate",
                            "epochs",
                            "batch_size",
                            "gradient_accumulation",
                            "max_length",
                            "validation_share",
                            "seed",
                            "lr_scheduler",
                            "warmup_ratio",
                            "max_steps",
                            "dtype",
                        }
                    )
                ),
                metrics=metrics,
            )
            write_manifest(partial, manifest)
    except FinetuneError:
        raise
    except BaseException as exc:
        kept = last_checkpoint(checkpoints)
        hint = f"; checkpoints kept in {checkpoints}, continue with --resume" if kept else ""
        if isinstance(exc, KeyboardInterrupt):
            raise TrainingInterrupted(
                f"training interrupted; nothing was written to {output}{hint}"
            ) from exc
        raise TrainingError(
            f"training failed ({type(exc).__name__}: {exc}); nothing was written to {output}{hint}"
        ) from exc
    shutil.rmtree(checkpoints, ignore_errors=True)
    return TrainResult(adapter_dir=output, metrics=metrics, manifest=manifest)
