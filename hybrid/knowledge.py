"""Knowledge bases as Hybrid's config sees them: the catalog of the configured store, new
knowledge bases with the config's defaults, searches and the labelled retrieval check; what
`hybrid kb ...` runs. The knowledge bases themselves are `retrieval.KnowledgeBase` objects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from retrieval import (
    ChunkingConfig,
    EmbedderConfig,
    KnowledgeBaseCatalog,
    KnowledgeBaseSettings,
    QueryOptions,
    StoreConfig,
)

if TYPE_CHECKING:
    from retrieval import KnowledgeBase

__all__ = [
    "ChunkingConfig",
    "EmbedderConfig",
    "KnowledgeBaseCatalog",
    "QueryOptions",
    "create_knowledge_base",
    "evaluate_retrieval",
    "open_catalog",
    "search",
]


def open_catalog(store: StoreConfig) -> KnowledgeBaseCatalog:
    """The knowledge bases of one store (embedded Chroma folder or a Chroma server)."""
    return KnowledgeBaseCatalog(store)


def create_knowledge_base(
    catalog: KnowledgeBaseCatalog,
    name: str,
    defaults: KnowledgeBaseSettings,
    *,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    boundaries: str | None = None,
    embedder_model: str | None = None,
) -> KnowledgeBase:
    """An empty knowledge base with `defaults` (the config's knowledge_base_defaults), each
    given value replacing its default (checked together: overlap < size)."""
    chunking = defaults.chunking.model_dump()
    if chunk_size is not None:
        chunking["chunk_size"] = chunk_size
    if chunk_overlap is not None:
        chunking["chunk_overlap"] = chunk_overlap
    if boundaries is not None:
        chunking["boundaries"] = boundaries
    embedder = defaults.embedder.model_dump()
    if embedder_model is not None:
        embedder["model"] = embedder_model
    settings = KnowledgeBaseSettings(
        chunking=ChunkingConfig(**chunking), embedder=EmbedderConfig(**embedder)
    )
    return catalog.create(name, settings)


def search(catalog: KnowledgeBaseCatalog, name: str, text: str, **options) -> list:
    """The passages of knowledge base `name` for `text`; `options` are `QueryOptions` fields
    (top_k, mode, filters, min_score, min_similarity, context_chars)."""
    return catalog.open(name).query(text, QueryOptions(**options))


def evaluate_retrieval(
    catalog: KnowledgeBaseCatalog,
    name: str,
    questions: Path,
    *,
    modes: Sequence[str] | None = None,
    depth: int = 10,
):
    """hit@1/3/5 and MRR per search mode on a labelled question file (JSON Lines: question,
    source, page, evidence); default modes: vector and hybrid.

    Raises:
        HybridError: the question file is missing; ValidationError: an unknown mode.
    """
    from hybrid.errors import HybridError
    from retrieval.evaluation import evaluate, load_questions

    if not questions.is_file():
        raise HybridError(f"question file not found: {questions}")
    labelled = load_questions(questions)
    for mode in modes or []:
        QueryOptions(mode=mode)  # validates the name
    return evaluate(catalog.open(name), labelled, modes=modes or ("vector", "hybrid"), depth=depth)
