"""Packaged base models (GGUF files shipped on PyPI): list them and convert one to a HF folder
once; what `hybrid model list | prepare` runs."""

from __future__ import annotations

from pathlib import Path

from finetune.base_models import DEFAULT_BASE_MODEL, DEFAULT_CACHE_DIR

__all__ = ["DEFAULT_BASE_MODEL", "DEFAULT_CACHE_DIR", "packaged_models", "prepare_base_model"]


def prepare_base_model(
    name: str = DEFAULT_BASE_MODEL, cache_dir: Path = DEFAULT_CACHE_DIR, *, force: bool = False
) -> Path:
    """Convert a packaged base model to `cache_dir/NAME` (once; `force` converts again).

    Raises:
        FinetuneError: unknown name (the packaged ones are listed) or its package is missing.
    """
    from finetune.base_models import prepare_model

    return prepare_model(name, cache_dir.expanduser(), force=force)


def packaged_models() -> list[dict]:
    """One row per packaged model: name, default, licence, instruct, architecture, install."""
    from finetune.base_models import PACKAGED_MODELS

    return [
        {
            "name": m.name,
            "default": m.name == DEFAULT_BASE_MODEL,
            "licence": m.licence,
            "instruct": m.instruct,
            "architecture": m.architecture,
            "install": m.pip_command,
        }
        for m in PACKAGED_MODELS.values()
    ]
