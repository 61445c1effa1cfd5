"""The JSON files of an adapter folder as typed models, validated at the edge.

`adapter_config.json` (PEFT's) and `hybrid_adapter.json` (our manifest) are read into these
models; every problem becomes one line naming the file and the field, so a malformed folder is
refused with a 422, never a 500. The safetensors file is read by its own library (weights.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from serving.adapters.errors import AdapterRejected

Number = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", strict=True)


class LoraConfigFile(_Model):
    """The fields of PEFT's adapter_config.json that decide whether the engine can serve it.
    Unknown fields are kept (PEFT adds new ones every release); known ones must have their
    type."""

    peft_type: str = "LORA"
    r: Annotated[StrictInt, Field(ge=1)]
    lora_alpha: Number | None = None
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None
    bias: str = "none"
    use_rslora: StrictBool = False
    use_dora: StrictBool = False
    lora_bias: StrictBool = False
    init_lora_weights: StrictBool | str = True
    alora_invocation_tokens: list[int] | None = None
    layer_replication: list[list[int]] | None = None
    use_bdlora: dict[str, Any] | None = None
    use_qalora: StrictBool = False
    rank_pattern: dict[str, Any] | None = None
    alpha_pattern: dict[str, Any] | None = None


# Inits that only set the starting weights (a saved adapter is a plain LoRA); others (PiSSA,
# OLoRA, CorDA, LoftQ) change the base weights when PEFT loads the adapter.
_PLAIN_INITS = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")


def unsupported_options(config: LoraConfigFile) -> list[str]:
    """Options of a LoRA the engine cannot serve exactly as trained, each with the fix."""
    problems = []
    if config.peft_type.upper() != "LORA":
        problems.append(f"peft_type {config.peft_type!r}: only LoRA adapters are served")
    if config.modules_to_save:
        problems.append(
            f"modules_to_save={config.modules_to_save} (full copies of base modules) is not "
            "supported by the engine; retrain without modules_to_save"
        )
    if config.use_dora:
        problems.append("use_dora: true (DoRA) is not supported by the engine; train a plain LoRA")
    if config.lora_bias or config.bias != "none":
        problems.append("LoRA bias (lora_bias / bias) is not supported; retrain with bias='none'")
    if isinstance(config.init_lora_weights, str) and (
        config.init_lora_weights.lower() not in _PLAIN_INITS
    ):
        problems.append(
            f"init_lora_weights={config.init_lora_weights!r} changes the base weights; convert "
            "it to a plain LoRA (PEFT: path_initial_model_for_weight_conversion)"
        )
    for field, what in (
        ("alora_invocation_tokens", "Activated LoRA"),
        ("layer_replication", "layer_replication"),
        ("use_bdlora", "block-diagonal LoRA"),
        ("use_qalora", "QALoRA"),
        ("rank_pattern", "per-module ranks (rank_pattern)"),
        ("alpha_pattern", "per-module alphas (alpha_pattern)"),
    ):
        if getattr(config, field):
            problems.append(f"{field}: {what} is not supported; train one rank and alpha")
    return problems


class BaseModelRef(_Model):
    id: str | None = None
    fingerprint: str | None = None


class ManifestFile(_Model):
    """hybrid_adapter.json, as far as serving reads it (docs/adapter-format.md)."""

    format: str
    base_model: BaseModelRef = BaseModelRef()


def one_line(
    exc: ValidationError,
    file: Path | str,
    model: type[BaseModel] | None = None,
    data: dict | None = None,
) -> str:
    """Every problem of a validation as `file: field 'a.b': problem (got value)`, one line. A
    field that failed every member of a union is reported once, with the type it needs."""
    by_field: dict[object, list] = {}
    for err in exc.errors(include_url=False):
        by_field.setdefault(err["loc"][0] if err["loc"] else "", []).append(err)
    problems = []
    for field, errors in by_field.items():
        whole = data is not None and field in data and len(errors) > 1
        got = json.dumps(data[field] if whole else errors[0].get("input"), default=str)
        got = got if len(got) <= 60 else got[:57] + "..."
        info = model.model_fields.get(str(field)) if model is not None else None
        if len(errors) > 1 and info is not None:
            needed = re.sub(r"\bNone(Type)?\b", "null", str(info.annotation).replace("typing.", ""))
            problems.append(f"field '{field}': must be {needed} (got {got})")
            continue
        err = errors[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"field '{where}': {err['msg']} (got {got})")
    return f"{file}: " + "; ".join(problems)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterRejected(f"{path}: not valid JSON ({exc})") from None


def parse(model: type[_Model], data: Any, file: Path | str):
    """`data` as `model`, or AdapterRejected naming `file` and every bad field."""
    if not isinstance(data, dict):
        raise AdapterRejected(
            f"{file}: must be a JSON object, got {type(data).__name__}"
            + (" (a list)" if isinstance(data, list) else "")
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AdapterRejected(one_line(exc, file, model, data)) from None
