"""Merge an adapter into its base model for single-adapter deployments."""

from __future__ import annotations

import json
from pathlib import Path

from finetune.base_models import resolve_base_model
from finetune.errors import AdapterError
from finetune.folders import staged_folder
from finetune.manifest import base_fingerprint, read_manifest


def merge_adapter(
    adapter_dir: Path,
    output_dir: Path,
    *,
    base_model: str | None = None,
    dtype: str = "auto",
    record: dict | None = None,
) -> Path:
    """Write base + adapter as one plain model folder (safetensors + tokenizer).

    `hybrid_merged.json` in it holds the adapter's manifest (`merged_from`) and `record` (what
    the caller knows of the adapter, e.g. its registered name, version and file digest).

    Raises:
        AdapterError: no manifest, the base does not match the adapter's, or the output exists.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = adapter_dir.expanduser()
    output_dir = output_dir.expanduser()
    if output_dir.exists():
        raise AdapterError(f"output folder {output_dir} already exists; choose another --out")
    manifest = read_manifest(adapter_dir)
    base_dir = resolve_base_model(base_model or manifest["base_model"]["path"])
    expected = manifest["base_model"]["fingerprint"]
    if base_fingerprint(base_dir) != expected:
        raise AdapterError(
            f"{base_dir} is not the base model adapter '{adapter_dir.name}' was trained on "
            f"({manifest['base_model']['id']}); pass that model with --base-model"
        )
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    with staged_folder(output_dir) as partial:
        merged.save_pretrained(partial, safe_serialization=True)
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(partial)
        (partial / "hybrid_merged.json").write_text(
            json.dumps({"merged_from": manifest, "adapter": record or {}}, indent=2) + "\n"
        )
    return output_dir
