"""The adapter manifest: the versioned contract between finetune/ (writes it) and serving/
(checks it before serving). Format `hybrid-adapter/1`, documented in docs/adapter-format.md.

The base model fingerprint (`hybrid-base/1`) is sha256 over a canonical JSON of
- the architecture-defining config keys (BASE_CONFIG_KEYS),
- the tokenizer's vocabulary and added tokens (from tokenizer.json),
- the chat template text,
- the name and shape of every weight tensor (from the safetensors headers; not the values, so a
  bf16 and an fp32 copy of one model match).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from safetensors import safe_open

from finetune.errors import AdapterError

MANIFEST_FILE = "hybrid_adapter.json"
MANIFEST_FORMAT = "hybrid-adapter/1"
FINGERPRINT_ALGORITHM = "hybrid-base/1"
BASE_CONFIG_KEYS = (
    "architectures",
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "tie_word_embeddings",
)


def _sha256_json(value) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def chat_template_of(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    config = model_dir / "tokenizer_config.json"
    if config.exists():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
    return None


def _tokenizer_vocab(model_dir: Path):
    path = model_dir / "tokenizer.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = (data.get("model") or {}).get("vocab")
    added = sorted((t.get("id"), t.get("content")) for t in data.get("added_tokens") or [])
    return {"vocab": vocab, "added": added}


def safetensors_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from the safetensors headers (values are not read)."""
    shapes: dict[str, list[int]] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(file, framework="numpy") as weights:
            names = weights.keys()  # a safe_open is not iterable itself
            shapes.update({name: weights.get_slice(name).get_shape() for name in names})
    return shapes


def base_fingerprint(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    template = chat_template_of(model_dir)
    return _sha256_json(
        {
            "algorithm": FINGERPRINT_ALGORITHM,
            "config": {k: config.get(k) for k in BASE_CONFIG_KEYS},
            "tokenizer": _tokenizer_vocab(model_dir),
            "chat_template": hashlib.sha256(template.encode()).hexdigest() if template else None,
            "tensors": safetensors_shapes(model_dir),
        }
    )


@dataclass(frozen=True)
class BaseModelInfo:
    id: str
    path: str
    fingerprint: str
    architecture: str
    chat_template_sha256: str | None

    @classmethod
    def of(cls, model_id: str, model_dir: Path) -> BaseModelInfo:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        template = chat_template_of(model_dir)
        return cls(
            id=model_id,
            path=str(model_dir.resolve()),
            fingerprint=base_fingerprint(model_dir),
            architecture=(config.get("architectures") or ["?"])[0],
            chat_template_sha256=hashlib.sha256(template.encode()).hexdigest()
            if template
            else None,
        )


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for dist in ("torch", "transformers", "peft", "hybrid-rag-lora"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def build_manifest(
    *,
    name: str,
    base: BaseModelInfo,
    adapter_dir: Path,
    data: dict,
    training: dict,
    metrics: dict,
) -> dict:
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    targets = config.get("target_modules")
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {**base.__dict__, "fingerprint_algorithm": FINGERPRINT_ALGORITHM},
        "lora": {
            "rank": config.get("r"),
            "alpha": config.get("lora_alpha"),
            "target_modules": sorted(targets) if isinstance(targets, list) else targets,
            "modules_to_save": config.get("modules_to_save") or [],
        },
        "data": data,
        "training": training,
        "metrics": metrics,
        "versions": library_versions(),
    }


def write_manifest(adapter_dir: Path, manifest: dict) -> Path:
    path = adapter_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def read_manifest(adapter_dir: Path) -> dict:
    path = adapter_dir / MANIFEST_FILE
    if not path.exists():
        raise AdapterError(f"{adapter_dir} has no {MANIFEST_FILE}; it was not trained by Hybrid")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != MANIFEST_FORMAT:
        raise AdapterError(
            f"{path}: unknown manifest format {manifest.get('format')!r} (expected {MANIFEST_FORMAT})"
        )
    return manifest
