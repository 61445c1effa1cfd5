"""retrieval: documents -> chunks -> embeddings -> Chroma (via LlamaIndex); query -> cited passages.

Python API::

    from retrieval import KnowledgeBaseCatalog, EmbeddedStoreConfig, QueryOptions

    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path="data/chroma"))
    kb = catalog.create("acme-docs")
    print(kb.ingest(["docs/"]).summary())
    for hit in kb.query("What is the refund window?", QueryOptions(mode="hybrid")):
        print(hit.score, hit.citation.label(), hit.text[:80])
    for chunk in kb.chunks(file="refunds.md"):
        print(chunk.citation.label(), chunk.text[:80])
"""

from retrieval.config import (
    ChunkingConfig,
    EmbeddedStoreConfig,
    EmbedderConfig,
    KnowledgeBaseSettings,
    QueryOptions,
    ServerStoreConfig,
    StoreConfig,
)
from retrieval.errors import (
    DocumentLoadError,
    EmbedderMismatch,
    FileNotInKnowledgeBase,
    InvalidKnowledgeBaseName,
    InvalidQuery,
    KnowledgeBaseExists,
    KnowledgeBaseNotFound,
    RetrievalError,
    StoreUnavailable,
    UnknownComponent,
    UnreadablePath,
)
from retrieval.ingest import IngestReport
from retrieval.knowledge_base import (
    KnowledgeBase,
    KnowledgeBaseCatalog,
    KnowledgeBaseInfo,
    KnowledgeBaseStats,
    StoredChunk,
)
from retrieval.search import Citation, Hit

__all__ = [
    "ChunkingConfig",
    "Citation",
    "DocumentLoadError",
    "EmbeddedStoreConfig",
    "EmbedderConfig",
    "EmbedderMismatch",
    "FileNotInKnowledgeBase",
    "Hit",
    "IngestReport",
    "InvalidKnowledgeBaseName",
    "InvalidQuery",
    "KnowledgeBase",
    "KnowledgeBaseCatalog",
    "KnowledgeBaseExists",
    "KnowledgeBaseInfo",
    "KnowledgeBaseNotFound",
    "KnowledgeBaseSettings",
    "KnowledgeBaseStats",
    "QueryOptions",
    "RetrievalError",
    "ServerStoreConfig",
    "StoreConfig",
    "StoreUnavailable",
    "StoredChunk",
    "UnknownComponent",
    "UnreadablePath",
]
