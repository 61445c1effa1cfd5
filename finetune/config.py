"""Typed, frozen settings of training (`TrainConfig`) and adapter evaluation (`EvalConfig`).
`hybrid/config.py` reads them from the YAML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from finetune.base_models import DEFAULT_BASE_MODEL, DEFAULT_CACHE_DIR

ALL_LINEAR = "all-linear"


class Frozen(BaseModel):
    """The base of the finetune layer's configs: frozen (a validated config cannot change) and strict about
    typos (unknown keys refused). Each layer keeps its own: the layers never import each other
    (tests/test_architecture.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LoraSettings(Frozen):
    """The LoRA adapter's shape."""

    rank: Annotated[int, Field(ge=1, le=256)] = 8
    """Rank r of the update matrices. 8 is enough to learn a voice or a format."""
    alpha: Annotated[float, Field(gt=0)] = 16
    """Scaling (alpha / rank = 2): the common default that trains stably at lr 2e-4."""
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: str | tuple[str, ...] = ALL_LINEAR
    """`all-linear` = every attention and MLP projection (not the output head), or a list."""
    modules_to_save: tuple[str, ...] = ()
    """Fully trained extra modules (e.g. embed_tokens). vLLM may refuse such adapters."""


class ReplaySettings(Frozen):
    """General instruction data mixed in to limit forgetting."""

    paths: tuple[Path, ...]
    share: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    format: str = "auto"


class TrainConfig(Frozen):
    """Everything `hybrid train CONFIG.yaml` needs."""

    base_model: str = DEFAULT_BASE_MODEL
    """A local folder, a hub id already in the local cache, or the embedded default."""
    data: tuple[Path, ...] = ()
    """Training files or folders."""
    data_format: str = "auto"
    """auto | alpaca | sharegpt | openai | raw."""
    output_dir: Path
    """Where the finished adapter folder appears (only when training succeeds)."""
    lora: LoraSettings = LoraSettings()
    replay: ReplaySettings | None = None
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 2e-4
    """2e-4 is the usual LoRA rate: ~10x a full fine-tune's, since few weights move."""
    epochs: Annotated[float, Field(gt=0, le=100)] = 3
    """3 passes learn a style from a few hundred examples without memorising them."""
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 4
    gradient_accumulation: Annotated[int, Field(ge=1, le=1024)] = 4
    """Effective batch = batch_size x gradient_accumulation = 16."""
    max_length: Annotated[int, Field(ge=16, le=131072)] = 1024
    """Tokens per example; longer chat examples are truncated, raw texts cut into windows."""
    validation_share: Annotated[float, Field(ge=0, lt=0.5)] = 0.1
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.03
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    seed: int = 42
    logging_steps: Annotated[int, Field(ge=1)] = 5
    save_steps: Annotated[int, Field(ge=1)] = 50
    """Checkpoint every N optimizer steps (for --resume)."""
    max_steps: Annotated[int, Field(ge=-1)] = -1
    """Stop after N optimizer steps (-1: run all epochs)."""
    threads: Annotated[int, Field(ge=0, le=256)] | Literal["auto"] = "auto"
    """Torch intra-op threads for training, set for the whole process when training starts.
    `auto`: the CPUs this process may use minus those other processes keep busy (sampled for
    one second when training starts), at least 1; 0: torch's default (one per core). Measured (bench/train_threads.py, 2 cores): two
    threads make a step 1.8x faster on an idle machine but 2x slower than one thread while
    another process holds a core, so the count follows the load."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Training precision of the base weights. float32 on CPU."""
    cache_dir: Path = DEFAULT_CACHE_DIR
    """Where the embedded default base model is converted to."""

    @property
    def checkpoint_dir(self) -> Path:
        """Checkpoints live beside the output, never inside it."""
        return self.output_dir.parent / f".{self.output_dir.name}.checkpoints"


GENERAL_GUARD = Path(__file__).resolve().parent / "resources" / "general_guard.jsonl"


class StyleRule(Frozen):
    """One rule a generated answer must satisfy."""

    kind: Literal["regex", "required_phrase", "forbidden_phrase", "json_schema"]
    value: str | dict
    name: str | None = None

    @model_validator(mode="after")
    def _value_fits_kind(self) -> StyleRule:
        if self.kind == "json_schema":
            import jsonschema

            if not isinstance(self.value, dict):
                raise ValueError("a json_schema rule's value must be a JSON schema object")
            try:
                jsonschema.validators.validator_for(self.value).check_schema(self.value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"invalid JSON schema ({exc.message}); fix the value") from None
        elif not isinstance(self.value, str) or not self.value:
            raise ValueError(f"a {self.kind} rule's value must be non-empty text")
        elif self.kind == "regex":
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(
                    f"regex {self.value!r} does not compile ({exc}); fix the pattern"
                ) from None
        return self

    def label(self) -> str:
        return self.name or f"{self.kind}:{str(self.value)[:40]}"

    def check(self, answer: str) -> bool:
        if self.kind == "regex":
            return re.search(str(self.value), answer) is not None
        if self.kind == "required_phrase":
            return str(self.value).lower() in answer.lower()
        if self.kind == "forbidden_phrase":
            return str(self.value).lower() not in answer.lower()
        import jsonschema

        try:
            jsonschema.validate(json.loads(answer), self.value)
        except (json.JSONDecodeError, jsonschema.ValidationError):
            return False
        return True


class EvalConfig(Frozen):
    adapter: Path
    """The adapter folder (trained by `hybrid train`)."""
    output_dir: Path | None = None
    """Where report.md, report.json and eval.png go (default: <adapter>/eval)."""
    base_model: str | None = None
    """Default: the base recorded in the adapter's manifest."""
    data: tuple[Path, ...] | None = None
    """The training data (default: the paths in the manifest); split with data_split.json."""
    data_format: str = "auto"
    general: tuple[Path, ...] = (GENERAL_GUARD,)
    """General-ability guard set (default: 60 neutral Q&A pairs shipped with Hybrid)."""
    max_examples: Annotated[int, Field(ge=1)] = 64
    max_length: Annotated[int, Field(ge=16)] = 512
    batch_size: Annotated[int, Field(ge=1)] = 8
    guard_bound: Annotated[float, Field(ge=0)] = 0.10
    """Largest allowed relative rise of the guard loss (0.10 = 10%)."""
    prompts: tuple[Path, ...] = ()
    """Prompt set for generation (chat JSONL; the last user turn is answered)."""
    rules: tuple[StyleRule, ...] = ()
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] = 96
    min_adherence: Annotated[float, Field(ge=0, le=1)] | None = None
    """If set, the adapter's rule adherence rate must reach this."""

    @model_validator(mode="after")
    def _prompts_and_rules_together(self) -> EvalConfig:
        if self.prompts and not self.rules:
            raise ValueError("prompts are given but no rules to check their answers; add rules")
        if (self.rules or self.min_adherence is not None) and not self.prompts:
            raise ValueError("rules need prompts to generate answers for; add prompts")
        return self
