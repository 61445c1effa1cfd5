"""Pages -> chunks with character spans, sized in the embedder's own tokens (LlamaIndex splitter)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from llama_index.core import Document
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode

from retrieval.config import ChunkingConfig
from retrieval.loaders import Page

# Chunk metadata that may join the text that is embedded and keyword-indexed (a section heading,
# say). Everything else (paths, hashes, offsets, counts, times) is bookkeeping: indexed as words,
# "md" or a hash would match chunks that say nothing of the kind.
SEARCHABLE_METADATA: frozenset[str] = frozenset()


def hide_bookkeeping(node: BaseNode) -> BaseNode:
    """Keep the node's non-searchable metadata out of the text LlamaIndex embeds, keyword-indexes
    and shows an LLM (its `excluded_*_metadata_keys`); the metadata itself stays for citations
    and filters. Applied at ingestion and again when chunks are read back, so knowledge bases
    ingested before it (whose stored nodes exclude nothing) are searched the same way."""
    hidden = sorted(k for k in node.metadata if k not in SEARCHABLE_METADATA)
    node.excluded_embed_metadata_keys = hidden
    node.excluded_llm_metadata_keys = hidden
    return node


@dataclass(frozen=True)
class Chunk:
    text: str
    page: int | None
    start_char: int
    """Offset of the chunk in its page's text (the whole document when there are no pages)."""
    end_char: int

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def make_splitter(config: ChunkingConfig, tokenize: Callable[[str], list[int]]) -> SentenceSplitter:
    return SentenceSplitter(
        chunk_size=config.chunk_size,
        chunk_overlap=config.chunk_overlap,
        tokenizer=tokenize,
        include_metadata=False,
        include_prev_next_rel=False,
    )


def chunk_pages(pages: list[Page], splitter: SentenceSplitter) -> list[Chunk]:
    """Split each page; spans are offsets into that page's text (found by LlamaIndex)."""
    chunks: list[Chunk] = []
    for page in pages:
        nodes = splitter.get_nodes_from_documents([Document(text=page.text)])
        cursor = 0
        for node in nodes:
            text = node.get_content()
            start = node.start_char_idx
            if start is None or start < 0:  # the splitter normalised whitespace: search ourselves
                found = page.text.find(text, cursor)
                start = found if found >= 0 else cursor
            chunks.append(
                Chunk(text=text, page=page.page, start_char=start, end_char=start + len(text))
            )
            cursor = max(cursor, start)
    return chunks
