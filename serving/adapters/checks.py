"""Checks an adapter folder must pass before it is registered or served.

Every refusal is an AdapterRejected naming the folder, the reason and the fix.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from serving.adapters.base import ServedBase
from serving.adapters.errors import AdapterRejected

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
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<kind>A|B)(?:\.weight)$")


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


def _safetensors_header(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("file too short")
            (length,) = struct.unpack("<Q", raw)
            if length > 100_000_000:
                raise ValueError("header length implausible")
            header = json.loads(fh.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not a mapping")
        return {k: v for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError) as exc:
        raise AdapterRejected(f"{path}: not a readable safetensors file ({exc})") from exc


def check_adapter(folder: Path, base: ServedBase, max_rank: int) -> AdapterFacts:
    """Refuse anything the served base and engine cannot serve exactly as trained."""
    check_files(folder)
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterRejected(f"{folder}/adapter_config.json: not valid JSON ({exc})") from exc
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterRejected(
            f"{folder}: peft_type {config.get('peft_type')!r}; only LoRA adapters are served"
        )
    rank = int(config.get("r") or 0)
    if rank < 1:
        raise AdapterRejected(f"{folder}: adapter_config.json has no LoRA rank 'r'")
    if rank > max_rank:
        raise AdapterRejected(
            f"{folder}: LoRA rank {rank} exceeds the engine's max rank {max_rank}; raise "
            "engine.max_lora_rank (and restart the engine) or train with a lower rank"
        )
    if config.get("modules_to_save"):
        raise AdapterRejected(
            f"{folder}: modules_to_save={config['modules_to_save']} (full copies of base modules) "
            "is not supported by the engine; retrain without modules_to_save"
        )
    manifest_path = folder / MANIFEST_FILE
    manifest = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise AdapterRejected(f"{manifest_path}: not valid JSON ({exc})") from exc
        if manifest.get("format") != MANIFEST_FORMAT:
            raise AdapterRejected(
                f"{manifest_path}: unknown manifest format {manifest.get('format')!r} "
                f"(this server reads {MANIFEST_FORMAT})"
            )
        trained_on = manifest.get("base_model") or {}
        if trained_on.get("fingerprint") != base.fingerprint:
            raise AdapterRejected(
                f"{folder}: trained on base model '{trained_on.get('id', '?')}' "
                f"(fingerprint {str(trained_on.get('fingerprint'))[:12]}), but this server serves "
                f"{base.path} (fingerprint {base.fingerprint[:12]}); serve it on its own base model"
            )
    check_tensors(folder, base, rank)
    targets = config.get("target_modules") or []
    targets = tuple(sorted(targets)) if isinstance(targets, list) else (str(targets),)
    return AdapterFacts(
        rank=rank,
        alpha=float(config.get("lora_alpha") or rank),
        target_modules=targets,
        manifest=manifest,
        foreign=not manifest,
    )


def check_tensors(folder: Path, base: ServedBase, rank: int) -> None:
    """Every tensor is a LoRA A/B matrix of a base linear layer, with matching shapes."""
    header = _safetensors_header(folder / "adapter_model.safetensors")
    if not header:
        raise AdapterRejected(f"{folder}/adapter_model.safetensors holds no tensors")
    problems = []
    for key, info in sorted(header.items()):
        match = _LORA_KEY.match(key)
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
        if list(info.get("shape", [])) != expected:
            problems.append(f"{key}: shape {info.get('shape')} but the base needs {expected}")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise AdapterRejected(
            f"{folder}: does not fit the served base model ({shown}); it was trained for another "
            "model"
        )
