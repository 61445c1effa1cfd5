from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from retrieval.chunking import chunk_pages, make_splitter
from retrieval.config import ChunkingConfig, EmbedderConfig
from retrieval.embedders import load_embedder
from retrieval.loaders import Page
from tests.helpers.documents import PARAGRAPHS


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(EmbedderConfig())


def test_spans_point_at_the_chunk_text_and_sizes_hold(embedder):
    text = "\n\n".join(f"Paragraph {i}. {p}" for i, p in enumerate(PARAGRAPHS * 8))
    config = ChunkingConfig(chunk_size=48, chunk_overlap=8)
    chunks = chunk_pages([Page(text=text, page=3)], make_splitter(config, embedder.tokenize))
    assert len(chunks) > 5
    for chunk in chunks:
        assert text[chunk.start_char : chunk.end_char] == chunk.text
        assert chunk.page == 3
        assert embedder.count_tokens(chunk.text) <= config.chunk_size
    starts = [c.start_char for c in chunks]
    assert starts == sorted(starts)
    # the whole text is covered: nothing between chunks is lost
    assert chunks[0].start_char == 0
    for before, after in itertools.pairwise(chunks):
        assert after.start_char <= before.end_char + 2


def test_overlap_must_be_below_size():
    with pytest.raises(
        ValidationError, match="chunk_overlap \\(64\\) must be smaller than chunk_size \\(64\\)"
    ):
        ChunkingConfig(chunk_size=64, chunk_overlap=64)
