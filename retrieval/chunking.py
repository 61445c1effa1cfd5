"""Pages -> chunks with character spans, sized in the embedder's own tokens (LlamaIndex splitter)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from llama_index.core import Document
from llama_index.core.node_parser import SentenceSplitter

from retrieval.config import ChunkingConfig
from retrieval.loaders import Page


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
