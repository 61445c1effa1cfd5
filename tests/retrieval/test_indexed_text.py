"""Chunk metadata (paths, hashes, offsets, counts, ingest time) stays out of the text that is
embedded and keyword-indexed, also in knowledge bases ingested before that rule (issue 14)."""

from __future__ import annotations

import json

import numpy as np

import retrieval.ingest
from retrieval import ChunkingConfig, KnowledgeBaseSettings
from retrieval.keyword_index import OPEN

SMALL = KnowledgeBaseSettings(chunking=ChunkingConfig(chunk_size=64, chunk_overlap=8))
TEXT = "The warranty covers motors and gearboxes for 24 months after purchase.\n"


def keyword_matches(kb, text: str) -> list[str]:
    """Ids of the chunks the keyword index (BM25) scores above zero for `text`."""
    index = OPEN.get(kb.collection, kb.keyword_folder)
    index.sync(kb._revision())
    return [r.node.node_id for r in index.search(text, 50, {})]


def stored_nodes(kb) -> list[dict]:
    rows = kb.collection.get(include=["metadatas"])
    return [json.loads(m["_node_content"]) for m in rows["metadatas"]]


def make_kb(catalog, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zebracrossing.md").write_text(TEXT)
    (docs / "other.txt").write_text("Standard shipping takes five business days.\n")
    kb = catalog.create("meta-kb", SMALL)
    kb.ingest([docs], progress=False)
    return kb


def assert_metadata_not_searchable(kb) -> None:
    file_hash = kb.collection.get(include=["metadatas"])["metadatas"][0]["file_hash"]
    for word in ("zebracrossing", "md", "txt", file_hash, "file_name", "chunk_count", "docs"):
        assert keyword_matches(kb, word) == [], word
    assert len(keyword_matches(kb, "warranty gearboxes")) == 1


def test_metadata_is_not_keyword_indexed(catalog, tmp_path):
    kb = make_kb(catalog, tmp_path)
    assert_metadata_not_searchable(kb)
    for node in stored_nodes(kb):  # the rule travels with the stored nodes too
        assert {"source", "file_hash", "ingested_at"} <= set(node["excluded_embed_metadata_keys"])
        assert {"source", "file_hash", "ingested_at"} <= set(node["excluded_llm_metadata_keys"])


def test_knowledge_base_ingested_before_the_rule_is_searched_the_same_way(
    catalog, tmp_path, monkeypatch
):
    monkeypatch.setattr(retrieval.ingest, "hide_bookkeeping", lambda node: node)
    kb = make_kb(catalog, tmp_path)
    monkeypatch.undo()
    assert all(not n["excluded_embed_metadata_keys"] for n in stored_nodes(kb))  # old-style
    assert_metadata_not_searchable(kb)


def test_embedded_text_is_the_chunk_text_alone(catalog, tmp_path):
    kb = make_kb(catalog, tmp_path)
    rows = kb.collection.get(include=["documents", "embeddings"])
    for text, stored in zip(rows["documents"], rows["embeddings"], strict=True):
        alone = kb.embedder.model.get_text_embedding(text)
        assert np.allclose(stored, alone, atol=1e-5)
