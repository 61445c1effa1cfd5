"""Two ingests of one knowledge base at once: each reports what it really wrote."""

from __future__ import annotations

import pytest

import retrieval.ingest
from retrieval import ChunkingConfig, InvalidKnowledgeBaseName, KnowledgeBaseSettings
from tests.helpers.documents import write_corpus

SMALL = KnowledgeBaseSettings(chunking=ChunkingConfig(chunk_size=64, chunk_overlap=8))


def test_second_of_two_concurrent_ingests_reports_only_what_it_wrote(
    catalog, tmp_path, monkeypatch
):
    """Run B read the store's state before run A wrote (as when both start together), then
    writes after A: B must report +0 chunks and the files as unchanged, and the store must
    hold each chunk once."""
    docs = tmp_path / "docs"
    write_corpus(docs, n_files=3)
    kb = catalog.create("twice", SMALL)
    first = kb.ingest([docs], progress=False)
    assert first.files_added == 3 and first.chunks_added > 3
    count = kb.collection.count()
    assert count == first.chunks_added
    revision = kb.collection.metadata["revision"]

    # B's view of the store: taken before A wrote anything
    monkeypatch.setattr(retrieval.ingest, "read_stored_state", lambda collection: {})
    second = kb.ingest([docs], progress=False)
    assert (second.chunks_added, second.chunks_removed) == (0, 0), second.summary()
    assert (second.files_added, second.files_unchanged) == (0, 3)
    assert "+0 / -0 chunks" in second.summary()
    assert kb.collection.count() == count
    assert kb.collection.metadata["revision"] == revision  # nothing changed, no new revision


@pytest.mark.parametrize("name", ["kb\n", "docs\n", "good-name\r\n", "\nkb"])
def test_knowledge_base_names_with_a_newline_are_refused(catalog, name):
    with pytest.raises(InvalidKnowledgeBaseName, match="invalid knowledge base name"):
        catalog.create(name)
    assert catalog.names() == []
