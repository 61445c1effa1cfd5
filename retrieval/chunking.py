"""Pages -> chunks with character spans, sized in the embedder's own tokens.

Two ways to cut (`ChunkingConfig.boundaries`):
- "structure": each paragraph (text between blank lines: Markdown/text blocks, the HTML loader's
  block elements, PDF paragraphs) is a chunk, a heading joins the paragraph it introduces, and a
  paragraph above `chunk_size` tokens is cut by LlamaIndex's sentence splitter. Small chunks rank
  well; the prompt gets their neighbours back at query time (`QueryOptions.context_chars`).
- "sentences": LlamaIndex's SentenceSplitter over the whole page, packing sentences up to
  `chunk_size` tokens (the former default).
"""

from __future__ import annotations

import hashlib
import re
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


_BLOCK = re.compile(r"\S(?:.|\n(?![ \t]*\n))*")  # text up to the next blank line
_MAX_HEADING_CHARS = 100
TABLE_CELL_SEPARATOR = " | "
"""The loaders write a table row as one line of `header: cell` items joined by this."""


def _is_heading(block: str) -> bool:
    """A one-line block that leads into the next: a Markdown `#` heading, or a short line that
    ends in a word, ':' or ',' (HTML headings, PDF titles, "Dear fellow owners,"). Table rows
    and lines that end a sentence or in a figure stand on their own."""
    if "\n" in block or len(block) > _MAX_HEADING_CHARS:
        return False
    if block.startswith("#"):
        return True
    return TABLE_CELL_SEPARATOR not in block and (block[-1].isalpha() or block[-1] in ":,")


def chunk_structured(
    pages: list[Page], splitter: SentenceSplitter, count_tokens: Callable[[str], int], size: int
) -> list[Chunk]:
    """Paragraph chunks (see the module docstring); spans are offsets into the page's text and
    `text == page.text[start_char:end_char]` holds for every chunk."""
    chunks: list[Chunk] = []
    for page in pages:
        pending_start: int | None = None  # a heading (or run of headings) waiting for its text
        for match in _BLOCK.finditer(page.text):
            block = match.group().rstrip()
            start = match.start() if pending_start is None else pending_start
            if _is_heading(block):
                pending_start = start
                continue
            pending_start = None
            text = page.text[start : match.start() + len(block)]
            if count_tokens(text) <= size:
                chunks.append(Chunk(text, page.page, start, start + len(text)))
                continue
            sub = chunk_pages([Page(text=text, page=page.page)], splitter)
            chunks += [Chunk(c.text, c.page, start + c.start_char, start + c.end_char) for c in sub]
        if pending_start is not None:  # the page ends in headings: keep them as a chunk
            text = page.text[pending_start:].rstrip()
            chunks.append(Chunk(text, page.page, pending_start, pending_start + len(text)))
    return chunks


def chunk_document(
    pages: list[Page], config: ChunkingConfig, tokenize: Callable[[str], list[int]]
) -> list[Chunk]:
    """Cut one document's pages as `config` says."""
    splitter = make_splitter(config, tokenize)
    if config.boundaries == "sentences":
        return chunk_pages(pages, splitter)
    return chunk_structured(pages, splitter, lambda t: len(tokenize(t)), config.chunk_size)
