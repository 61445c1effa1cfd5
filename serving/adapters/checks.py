"""Checks an adapter folder must pass before it is registered or served.

Every refusal is an AdapterRejected naming the folder, the reason and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from serving.adapters.base import ServedBase
from serving.adapters.errors import AdapterRejected
from serving.adapters.schema import (
    LoraConfigFile,
    ManifestFile,
    parse,
    read_json,
    unsupported_options,
)
from serving.adapters.weights import (
    MAX_ABS_WEIGHT,
    check_scaling,
    check_size,
    check_values,
    tensor_shapes,
)

MANIFEST_FILE = "hybrid_adapter.json"
MANIFEST_FORMAT = "hybrid-adapter/1"
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
COPIED_FILES = (
    *REQUIRED_FILES,
    MANIFEST_FILE,
    "metrics.json",
    "loss_curve.png",
    "data_split.json",
    "README.md",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_LORA_KEY = re.compile(r"(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<kind>A|B)\.weight")


@dataclass(frozen=True)
class AdapterFacts:
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    manifest: dict
    foreign: bool
    """True when the folder came without a Hybrid manifest (LLaMA-Factory, Axolotl, TRL, ...)."""


def check_files(folder: Path) -> None:
    """Safetensors only, regular files only (no symlinks that could point anywhere)."""
    try:
        is_folder = folder.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise AdapterRejected(f"cannot read adapter folder {folder}: {exc.strerror}") from None
    if not is_folder:
        raise AdapterRejected(f"adapter folder not found: {folder}")
    for entry in folder.iterdir():
        if entry.is_symlink():
            raise AdapterRejected(
                f"{folder}: {entry.name} is a symbolic link; copy the real file into the folder"
            )
        if entry.suffix.lower() in PICKLE_SUFFIXES:
            raise AdapterRejected(
                f"{folder}: {entry.name} is a pickle-based checkpoint, which can run code when "
                "loaded; save the adapter with safetensors (PEFT: save_pretrained(..., "
                "safe_serialization=True))"
            )
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise AdapterRejected(
            f"{folder}: missing {', '.join(missing)}; is this a PEFT LoRA folder?"
        )


def check_adapter(
    folder: Path,
    base: ServedBase,
    max_rank: int,
    *,
    max_bytes: int | None = None,
    max_abs_weight: float = MAX_ABS_WEIGHT,
) -> AdapterFacts:
    """Refuse anything the served base and engine cannot serve exactly as trained: unsafe or
    missing files, a folder larger than `max_bytes`, malformed JSON files, options the engine
    does not implement, tensors that do not fit the base, a truncated weights file, and
    non-finite or implausibly large weights.

    Raises:
        AdapterRejected: one line naming the file (and field or tensor), the problem and the fix.
    """
    check_files(folder)
    if max_bytes is not None:
        check_size(folder, COPIED_FILES, max_bytes)
    config_path = folder / "adapter_config.json"
    config = parse(LoraConfigFile, read_json(config_path), config_path)
    problems = unsupported_options(config)
    if problems:
        raise AdapterRejected(f"{config_path}: " + "; ".join(problems))
    rank = config.r
    if rank > max_rank:
        raise AdapterRejected(
            f"{folder}: LoRA rank {rank} exceeds the engine's max rank {max_rank}; raise "
            "engine.max_lora_rank (and restart the engine) or train with a lower rank"
        )
    alpha = float(config.lora_alpha if config.lora_alpha is not None else rank)
    check_scaling(config_path, rank, alpha, config.use_rslora)
    manifest_path = folder / MANIFEST_FILE
    manifest: dict = {}
    if manifest_path.exists():
        raw = read_json(manifest_path)
        parsed = parse(ManifestFile, raw, manifest_path)
        manifest = raw
        if parsed.format != MANIFEST_FORMAT:
            raise AdapterRejected(
                f"{manifest_path}: unknown manifest format {parsed.format!r} "
                f"(this server reads {MANIFEST_FORMAT})"
            )
        trained_on = parsed.base_model
        if trained_on.fingerprint != base.fingerprint:
            raise AdapterRejected(
                f"{folder}: trained on base model '{trained_on.id or '?'}' "
                f"(fingerprint {str(trained_on.fingerprint)[:12]}), but this server serves "
                f"{base.path} (fingerprint {base.fingerprint[:12]}); serve it on its own base model"
            )
    check_tensors(folder, base, rank)
    check_values(folder / "adapter_model.safetensors", max_abs_weight)
    targets = config.target_modules or []
    targets = tuple(sorted(targets)) if isinstance(targets, list) else (targets,)
    return AdapterFacts(
        rank=rank,
        alpha=alpha,
        target_modules=targets,
        manifest=manifest,
        foreign=not manifest,
    )


def check_tensors(folder: Path, base: ServedBase, rank: int) -> None:
    """Every tensor is a LoRA A/B matrix of a base linear layer, with matching shapes."""
    header = tensor_shapes(folder / "adapter_model.safetensors")
    if not header:
        raise AdapterRejected(f"{folder}/adapter_model.safetensors holds no tensors")
    problems = []
    for key, shape in sorted(header.items()):
        match = _LORA_KEY.fullmatch(key)
        if not match:
            problems.append(f"{key}: not a LoRA A/B weight (unsupported module)")
            continue
        module, kind = match["module"], match["kind"]
        base_shape = base.shapes.get(f"{module}.weight")
        if base_shape is None or len(base_shape) != 2:
            problems.append(f"{key}: the base model has no linear layer '{module}'")
            continue
        out_features, in_features = base_shape
        expected = [rank, in_features] if kind == "A" else [out_features, rank]
        if shape != expected:
            problems.append(f"{key}: shape {shape} but the base needs {expected}")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise AdapterRejected(
            f"{folder}: does not fit the served base model ({shown}); it was trained for another "
            "model"
        )
