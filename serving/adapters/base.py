"""What the registry needs to know about the served base model.

The fingerprint follows the `hybrid-base/1` algorithm of docs/adapter-format.md (the reference
implementation is finetune.manifest.base_fingerprint; tests/test_adapter_contract.py checks
that both agree). serving/ must not import finetune/, hence this second implementation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from serving.adapters.weights import tensor_shapes as file_shapes

FINGERPRINT_ALGORITHM = "hybrid-base/1"
_CONFIG_KEYS = (
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


@dataclass(frozen=True)
class ServedBase:
    path: Path
    fingerprint: str
    shapes: dict[str, tuple[int, ...]]
    """Weight name -> shape, e.g. 'model.layers.0.self_attn.q_proj.weight' -> (128, 128)."""


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        shapes.update({name: tuple(shape) for name, shape in file_shapes(file).items()})
    return shapes


def _chat_template(folder: Path) -> str | None:
    if (folder / "chat_template.jinja").exists():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.exists():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def _vocab(folder: Path):
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    added = sorted((t.get("id"), t.get("content")) for t in data.get("added_tokens") or [])
    return {"vocab": (data.get("model") or {}).get("vocab"), "added": added}


def describe_base(folder: Path) -> ServedBase:
    """Fingerprint and weight shapes of a base model folder."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    shapes = tensor_shapes(folder)
    template = _chat_template(folder)
    canonical = {
        "algorithm": FINGERPRINT_ALGORITHM,
        "config": {k: config.get(k) for k in _CONFIG_KEYS},
        "tokenizer": _vocab(folder),
        "chat_template": hashlib.sha256(template.encode()).hexdigest() if template else None,
        "tensors": {k: list(v) for k, v in shapes.items()},
    }
    digest = hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return ServedBase(path=folder, fingerprint=digest, shapes=shapes)
