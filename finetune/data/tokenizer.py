"""Load a base model's tokenizer from a local folder, for length and chat-template checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.errors import BaseModelError


def load_tokenizer(folder: str | Path) -> Any:
    """A Hugging Face tokenizer from a local model folder (never downloads).

    Raises:
        BaseModelError: the folder is missing or holds no loadable tokenizer.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise BaseModelError(
            f"tokenizer folder not found: {path}; pass the base model's folder "
            "(the one holding tokenizer.json or tokenizer_config.json)"
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # transformers raises many types (OSError, ValueError, ...)
        raise BaseModelError(
            f"cannot load a tokenizer from {path} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); pass the base model's "
            "folder, which holds tokenizer.json or tokenizer_config.json"
        ) from exc
