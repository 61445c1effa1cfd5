"""Typed, frozen training settings. `hybrid/config.py` reads them from the YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ALL_LINEAR = "all-linear"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LoraSettings(_Frozen):
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


class ReplaySettings(_Frozen):
    """General instruction data mixed in to limit forgetting."""

    paths: tuple[Path, ...]
    share: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    format: str = "auto"


class TrainConfig(_Frozen):
    """Everything `hybrid train CONFIG.yaml` needs."""

    base_model: str = "SmolLM2-135M-Instruct"
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
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Training precision of the base weights. float32 on CPU."""
    cache_dir: Path = Path("~/.cache/hybrid/models")
    """Where the embedded default base model is converted to."""

    @property
    def checkpoint_dir(self) -> Path:
        """Checkpoints live beside the output, never inside it."""
        return self.output_dir.parent / f".{self.output_dir.name}.checkpoints"
