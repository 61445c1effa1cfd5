"""The keyword (BM25) index is saved with an embedded knowledge base, loaded by a new process
instead of rebuilt, updated by diff on ingestion, and never trusted when stale (issue 14)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from llama_index.retrievers.bm25 import BM25Retriever

import retrieval.ingest
from retrieval import ChunkingConfig, KnowledgeBaseSettings, QueryOptions, keyword_index
from retrieval.chunking import hide_bookkeeping
from retrieval.keyword_index import OPEN, KeywordIndex
from tests.helpers.documents import write_corpus

SMALL = KnowledgeBaseSettings(chunking=ChunkingConfig(chunk_size=64, chunk_overlap=8))
HYBRID = QueryOptions(mode="hybrid", top_k=3)


@pytest.fixture
def kb(catalog, tmp_path):
    OPEN.clear()
    kb = catalog.create("kw-kb", SMALL)
    write_corpus(tmp_path / "docs", 3)
    kb.ingest([tmp_path / "docs"], progress=False)
    yield kb
    OPEN.clear()


@pytest.fixture
def tokenized(monkeypatch) -> list[str]:
    """Every text the keyword index tokenizes from now on."""
    seen: list[str] = []
    original = keyword_index.tokenize
    monkeypatch.setattr(
        keyword_index, "tokenize", lambda texts: seen.extend(texts) or original(texts)
    )
    return seen


def found(kb, code: str) -> bool:
    return any(code in h.text for h in kb.query(code, HYBRID))


def test_a_new_process_loads_the_saved_index(kb, tokenized):
    assert (kb.keyword_folder / "state.json").is_file()
    OPEN.clear()  # what a new process starts with
    assert found(kb, "ref002x03")
    assert tokenized == ["ref002x03"]  # the query alone: no chunk was read and tokenized again
    assert OPEN.get(kb.collection, kb.keyword_folder).loaded_from_disk


def test_ingestion_tokenizes_only_new_chunks(kb, tmp_path, tokenized):
    new = tmp_path / "docs" / "new.md"
    new.write_text("The zebracorn mascot was retired in 2024.\n", encoding="utf-8")
    OPEN.clear()
    kb.ingest([tmp_path / "docs"], progress=False)
    assert tokenized == ["The zebracorn mascot was retired in 2024."]
    assert found(kb, "zebracorn")

    (tmp_path / "docs" / "doc-001.md").unlink()
    tokenized.clear()
    kb.ingest([tmp_path / "docs"], progress=False)
    assert tokenized == []  # removal drops tokens, reads nothing
    assert "ref001x02" not in OPEN.get(kb.collection, kb.keyword_folder).vocab  # nor keeps words
    assert not found(kb, "ref001x02") and found(kb, "ref002x02")


def test_chunks_changed_behind_its_back_are_not_trusted(kb, tmp_path):
    """A killed ingestion can change chunks without a new revision: the chunk count differs
    from the saved index's, which is then updated rather than used."""
    gone = kb.collection.get(where={"file_name": "doc-002.md"}, include=[])["ids"]
    kb.collection.delete(ids=gone)
    OPEN.clear()
    hits = kb.query("ref002x01", HYBRID)
    assert hits and not any("ref002x01" in h.text for h in hits)
    assert not OPEN.get(kb.collection, kb.keyword_folder).loaded_from_disk


@pytest.mark.parametrize("damage", ["state", "tokens", "scores"])
def test_an_unreadable_saved_index_is_rebuilt(kb, damage):
    folder = kb.keyword_folder
    if damage == "state":
        (folder / "state.json").write_text("{not json", encoding="utf-8")
    else:
        generation = json.loads((folder / "state.json").read_text())["generation"]
        if damage == "tokens":
            (folder / f"{generation}.tokens.npz").write_bytes(b"truncated")
        else:
            shutil.rmtree(folder / f"{generation}.bm25")
    OPEN.clear()
    assert found(kb, "ref000x04")
    OPEN.clear()
    assert found(kb, "ref000x04") and OPEN.get(kb.collection, folder).loaded_from_disk


def test_deleting_the_knowledge_base_removes_its_index(catalog, kb):
    folder = kb.keyword_folder
    assert folder.is_dir()
    catalog.delete("kw-kb")
    assert not folder.exists()


def test_scores_match_llamaindex_bm25(kb):
    rows = kb.collection.get(include=["documents", "metadatas"])
    nodes = [
        hide_bookkeeping(metadata_dict_to_node(m, text=d))
        for d, m in zip(rows["documents"], rows["metadatas"], strict=True)
    ]
    reference = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=10)
    ours = KeywordIndex(kb.collection, None)  # in memory, as for a Chroma server
    ours.sync(kb._revision())
    for query in ("warranty gearboxes", "refund window 30 days", "ref001x03 firmware"):
        expected = sorted(round(r.score, 5) for r in reference.retrieve(query) if r.score > 0)
        got = sorted(round(r.score, 5) for r in ours.search(query, 10, {}))
        assert got == expected and np.all(np.array(got) > 0), query


def test_queries_and_chunks_without_indexable_words(catalog, tmp_path):
    OPEN.clear()
    kb = catalog.create("bare-kb", SMALL)
    (tmp_path / "a.txt").write_text("a b c\n", encoding="utf-8")  # no word of 2+ letters
    kb.ingest([tmp_path / "a.txt"], progress=False)
    assert [h.text for h in kb.query("anything at all", HYBRID)] == ["a b c"]  # vector alone
    write_corpus(tmp_path / "docs", 1)
    kb.ingest([tmp_path / "docs", tmp_path / "a.txt"], progress=False)
    assert kb.query("the of and", HYBRID)  # stopwords only: the vector list still answers
    OPEN.clear()


def test_a_run_killed_after_replacing_chunks_leaves_no_trusted_stale_index(
    kb, tmp_path, monkeypatch
):
    """A changed file with as many chunks as before, the run killed once they are written and
    the old ones deleted: same chunk count, so only a new revision tells the saved index is
    stale."""
    path = tmp_path / "docs" / "doc-001.md"
    path.write_text(path.read_text().replace("ref001x02", "zzz001x02"), encoding="utf-8")
    before = kb.collection.count()
    original = retrieval.ingest._write

    def write_then_die(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt  # the kill, after the new chunks are in and the old ones out

    monkeypatch.setattr(retrieval.ingest, "_write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        kb.ingest([tmp_path / "docs"], progress=False)
    assert kb.collection.count() == before
    OPEN.clear()  # a new process
    assert found(kb, "zzz001x02")
