"""Scale an adapter's strength: the same weights with `lora_alpha` (and any per-module
`alpha_pattern`) multiplied by a factor, so the update it adds to every base-model layer is that
factor times as large (LoRA's scaling is alpha / r, or alpha / sqrt(r) with rsLoRA: linear in
alpha either way). 1.0 is the trained adapter; 0.0 would be the base model.

Why: a voice adapter trades the base model's facts for its voice. On the CEO report example the
grounded recipe at full strength is as right as the base app with a voice gain; at half
strength it is more often right than the base but without the voice (README, "Adapters that
keep the facts"). A scaled copy is an ordinary PEFT folder: register it as a new version and
promote or roll back like any other (no engine restart). PEFT and vLLM read `lora_alpha` from
the config, so no weights are rewritten; nothing in PEFT scales an adapter on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from finetune.errors import AdapterError
from finetune.folders import staged_folder
from finetune.manifest import MANIFEST_FILE

MAX_FACTOR = 4.0


def scale_adapter(adapter_dir: Path, output_dir: Path, factor: float) -> Path:
    """Copy `adapter_dir` to `output_dir` with its strength multiplied by `factor`.

    The output appears complete or not at all (written under a temporary name, then renamed).
    Its manifest, when there is one, records the factor and the folder it was scaled from.

    Raises:
        AdapterError: factor outside (0, 4], no adapter_config.json, an unreadable config or a
            non-LoRA adapter, or the output folder exists.
    """
    if not 0 < factor <= MAX_FACTOR:
        raise AdapterError(f"--factor must be above 0 and at most {MAX_FACTOR:g} (got {factor:g})")
    source = adapter_dir.expanduser().resolve()
    out = output_dir.expanduser().resolve()
    config_path = source / "adapter_config.json"
    if not config_path.is_file():
        raise AdapterError(f"{source} is not a PEFT adapter folder (no adapter_config.json)")
    if out.exists():
        raise AdapterError(f"output folder {out} already exists; choose another --out")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{config_path}: not valid JSON ({exc})") from None
    alpha = config.get("lora_alpha") if isinstance(config, dict) else None
    if config.get("peft_type", "LORA") != "LORA" or not isinstance(alpha, int | float):
        raise AdapterError(f"{config_path}: not a LoRA adapter with a numeric lora_alpha")
    config["lora_alpha"] = alpha * factor
    patterns = config.get("alpha_pattern") or {}
    config["alpha_pattern"] = {key: value * factor for key, value in patterns.items()}
    with staged_folder(out) as partial:
        shutil.copytree(source, partial)
        (partial / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        manifest_path = partial / MANIFEST_FILE
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            earlier = manifest.get("scaled", {}).get("factor", 1.0)
            manifest["scaled"] = {"factor": earlier * factor, "from": str(source)}
            manifest.setdefault("lora", {})["alpha"] = config["lora_alpha"]
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out
