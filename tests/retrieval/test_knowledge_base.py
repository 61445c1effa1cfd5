"""Knowledge bases with the real MiniLM embedder and real embedded Chroma."""

from __future__ import annotations

import pytest

from retrieval import (
    ChunkingConfig,
    EmbedderConfig,
    FileNotInKnowledgeBase,
    InvalidKnowledgeBaseName,
    InvalidQuery,
    KnowledgeBaseExists,
    KnowledgeBaseNotFound,
    KnowledgeBaseSettings,
    QueryOptions,
    UnreadablePath,
)
from tests.helpers.documents import write_corpus, write_pdf
from tests.helpers.reliability import record

SMALL = KnowledgeBaseSettings(chunking=ChunkingConfig(chunk_size=64, chunk_overlap=8))
REQUIRED_METADATA = {
    "source",
    "file_name",
    "page",
    "start_char",
    "end_char",
    "content_hash",
    "file_hash",
    "ingested_at",
    "chunk_index",
    "chunk_count",
}


def all_chunks(kb) -> dict[str, tuple[str, dict]]:
    rows = kb.collection.get(include=["documents", "metadatas"])
    return {
        i: (d, m) for i, d, m in zip(rows["ids"], rows["documents"], rows["metadatas"], strict=True)
    }


def test_create_list_delete(catalog):
    catalog.create("alpha-kb")
    catalog.create("beta-kb")
    assert catalog.names() == ["alpha-kb", "beta-kb"]
    with pytest.raises(KnowledgeBaseExists, match="already exists"):
        catalog.create("alpha-kb")
    catalog.delete("alpha-kb")
    assert catalog.names() == ["beta-kb"]


def test_unknown_kb_lists_existing(catalog):
    catalog.create("docs-one")
    with pytest.raises(KnowledgeBaseNotFound) as info:
        catalog.open("docs-two")
    assert "unknown knowledge base 'docs-two' (existing: docs-one)" in str(info.value)
    assert "hybrid kb create docs-two" in str(info.value)


@pytest.mark.parametrize("name", ["x", "Upper", "-dash", "has space", "a" * 70])
def test_bad_names_are_refused(catalog, name):
    with pytest.raises(InvalidKnowledgeBaseName, match="invalid knowledge base name"):
        catalog.create(name)


def test_ingest_is_incremental_and_idempotent(catalog, tmp_path):
    docs = tmp_path / "docs"
    files = write_corpus(docs, n_files=4)
    kb = catalog.create("incr", SMALL)
    first = kb.ingest([docs], progress=False)
    assert first.files_added == 4 and first.chunks_added > 4
    before = all_chunks(kb)
    assert len(before) == first.chunks_added

    again = kb.ingest([docs], progress=False)
    assert (again.chunks_added, again.chunks_removed, again.files_unchanged) == (0, 0, 4)
    assert set(all_chunks(kb)) == set(before)

    files[0].write_text("# Changed\n\nThe new text mentions a platypus.", encoding="utf-8")
    files[1].unlink()
    changed = kb.ingest([docs], progress=False)
    assert (
        changed.files_updated == 1 and changed.files_removed == 1 and changed.files_unchanged == 2
    )
    after = all_chunks(kb)
    sources = {m["source"] for _, m in after.values()}
    assert str(files[1]) not in sources
    texts_of_0 = [d for d, m in after.values() if m["source"] == str(files[0])]
    assert len(texts_of_0) == 1 and "platypus" in texts_of_0[0]
    untouched = {i for i, (_, m) in before.items() if m["source"] in {str(files[2]), str(files[3])}}
    assert untouched <= set(after)


def test_every_chunk_has_citation_metadata(catalog, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    write_pdf(docs / "report.pdf", ["Revenue rose to 412 million.", "Headcount reached 1,240."])
    (docs / "faq.md").write_text("Refunds take 30 days.", encoding="utf-8")
    kb = catalog.create("meta", SMALL)
    kb.ingest([docs], progress=False)
    chunks = all_chunks(kb)
    assert len(chunks) == 3
    for text, meta in chunks.values():
        assert set(meta) >= REQUIRED_METADATA
        assert text.strip()
    pages = sorted(m["page"] for _, m in chunks.values() if m["file_name"] == "report.pdf")
    assert pages == [1, 2]

    hits = kb.query("What headcount was reached?", QueryOptions(top_k=1))
    assert hits[0].citation.file_name == "report.pdf" and hits[0].citation.page == 2
    assert "1,240" in hits[0].text
    assert hits[0].citation.label().startswith("report.pdf p.2 [")


@pytest.mark.reliability
def test_bad_files_are_reported_and_skipped_and_the_rest_ingests(catalog, tmp_path):
    """Truncated PDF, binary junk named .txt, a huge file, bad encodings: each is reported by
    name with its reason and skipped; the good files ingest; a good file that is later damaged
    keeps the chunks of its last good version."""
    from retrieval.loaders.registry import MAX_DOCUMENT_BYTES

    docs = tmp_path / "docs"
    write_corpus(docs, n_files=2)
    good_pdf = write_pdf(docs / "report.pdf", ["Revenue grew 18% in 2025.", "Costs fell."])
    bad = {
        "junk.txt": "binary data",
        "broken.pdf": "cannot parse",
        "truncated.pdf": "truncated.pdf",
        "huge.md": "above the",
        "latin1.md": "not UTF-8",
        "empty.html": "no extractable text",
    }
    (docs / "junk.txt").write_bytes(bytes(range(256)) * 64)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n%broken")
    (docs / "truncated.pdf").write_bytes(good_pdf.read_bytes()[:400])
    with (docs / "huge.md").open("wb") as huge:  # sparse: costs no disk
        huge.truncate(MAX_DOCUMENT_BYTES + 1)
    (docs / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (docs / "empty.html").write_text("<html><body>   </body></html>")
    kb = catalog.create("partial", SMALL)
    report = kb.ingest([docs], progress=False)
    assert report.files_added == 3
    failures = {f.path.rsplit("/", 1)[-1]: str(f) for f in report.failures}
    assert sorted(failures) == sorted(bad)
    for name, reason in bad.items():
        assert reason in failures[name] and "\n" not in failures[name], failures[name]
    assert f"{len(bad)} failed" in report.summary()
    chunks = all_chunks(kb)

    good_pdf.write_bytes(good_pdf.read_bytes()[:300])  # damaged after a good ingestion
    again = kb.ingest([docs], progress=False)
    assert "report.pdf" in {f.path.rsplit("/", 1)[-1] for f in again.failures}
    assert all_chunks(kb) == chunks
    record(
        "Bad input",
        "Documents: " + ", ".join(bad) + ", a good PDF damaged after ingestion",
        files_tried=len(bad) + 1,
        reported_and_skipped=len(bad) + 1,
        good_files_ingested=report.files_added,
        chunks_lost=0,
    )


def test_unreadable_path(catalog, tmp_path):
    kb = catalog.create("paths", SMALL)
    with pytest.raises(UnreadablePath, match=r"path not found: .*missing"):
        kb.ingest([tmp_path / "missing"], progress=False)


def test_vector_and_hybrid_queries_with_filters(catalog, tmp_path):
    docs = tmp_path / "docs"
    write_corpus(docs, n_files=6)
    kb = catalog.create("search", SMALL)
    kb.ingest([docs], progress=False)

    vector = kb.query("How long does the warranty last?", QueryOptions(top_k=3))
    assert len(vector) == 3
    assert "warranty" in vector[0].text.lower()
    assert vector[0].score >= vector[1].score >= vector[2].score
    assert -1.0 <= vector[-1].score <= 1.0

    # An exact code that only the keyword ranker can pin down: hybrid ranks its chunk first,
    # vector search alone does not.
    hybrid = kb.query("ref004x03", QueryOptions(top_k=3, mode="hybrid"))
    assert "ref004x03" in hybrid[0].text
    vector_only = kb.query("ref004x03", QueryOptions(top_k=3))
    assert "ref004x03" not in vector_only[0].text

    only = kb.query("warranty", QueryOptions(top_k=10, filters={"file_name": "doc-002.md"}))
    assert only and {h.citation.file_name for h in only} == {"doc-002.md"}
    only_h = kb.query(
        "warranty", QueryOptions(top_k=10, mode="hybrid", filters={"file_name": "doc-002.md"})
    )
    assert only_h and {h.citation.file_name for h in only_h} == {"doc-002.md"}
    assert kb.query("warranty", QueryOptions(filters={"file_name": "nope.md"}, mode="hybrid")) == []

    high = kb.query("warranty", QueryOptions(top_k=10, min_score=0.99))
    assert high == []


def test_keyword_index_reads_large_knowledge_bases_page_by_page(catalog, tmp_path, monkeypatch):
    """Chroma refuses one read of ~100k chunks (found by bench/retrieval_bench.py): the BM25
    index is built from pages; with 4-chunk pages every chunk must still be found."""
    from retrieval import keyword_index, stores

    monkeypatch.setattr(stores, "PAGE_ROWS", 4)
    monkeypatch.setattr(keyword_index, "_ID_BATCH", 3)
    docs = tmp_path / "docs"
    write_corpus(docs, n_files=6)
    kb = catalog.create("paged", SMALL)
    kb.ingest([docs], progress=False)
    assert kb.collection.count() > 3 * 4
    for code in ("ref000x00", "ref005x05"):
        hits = kb.query(code, QueryOptions(top_k=3, mode="hybrid"))
        assert any(code in h.text for h in hits), code
    both = {"file_name": "doc-005.md", "chunk_index": 0}
    hits = kb.query("ref005x00", QueryOptions(top_k=3, mode="hybrid", filters=both))
    assert hits and {(h.citation.file_name, h.metadata["chunk_index"]) for h in hits} == {
        ("doc-005.md", 0)
    }


def test_every_reader_of_the_collection_pages_through_all_of_it(catalog, tmp_path, monkeypatch):
    """chunks(), stats() and the re-ingest's stored state read the collection PAGE_ROWS rows at
    a time: with 4-row pages they still see every chunk."""
    from retrieval import stores

    docs = tmp_path / "docs"
    write_corpus(docs, n_files=4)
    kb = catalog.create("paged-readers", SMALL)
    kb.ingest([docs], progress=False)
    monkeypatch.setattr(stores, "PAGE_ROWS", 4)
    total = kb.collection.count()
    assert total > 3 * 4
    assert len(kb.chunks()) == total
    assert {c.citation.file_name for c in kb.chunks("doc-002.md")} == {"doc-002.md"}
    assert (kb.stats().chunks, kb.stats().files) == (total, 4)
    again = kb.ingest([docs], progress=False)
    assert (again.chunks_added, again.chunks_removed, again.files_unchanged) == (0, 0, 4)


def test_prepare_builds_the_keyword_index_the_first_query_uses(catalog, tmp_path, monkeypatch):
    from retrieval.keyword_index import KeywordIndex

    docs = tmp_path / "docs"
    write_corpus(docs, n_files=3)
    kb = catalog.create("prepared", SMALL)
    kb.ingest([docs], progress=False)
    options = QueryOptions(mode="hybrid", filters={"file_name": "doc-001.md"})
    kb.prepare(options)
    builds = []
    original = KeywordIndex._update
    monkeypatch.setattr(KeywordIndex, "_update", lambda *a: builds.append(a) or original(*a))
    hits = kb.query("ref001x02", options)
    assert builds == [] and "ref001x02" in hits[0].text
    kb.query("ref001x02", QueryOptions(mode="hybrid"))  # other filters: the same index
    assert builds == []
    with pytest.raises(InvalidQuery):
        kb.prepare(QueryOptions(mode="hybrid", filters={"_secret": 1}))


def test_hybrid_index_follows_reingestion(catalog, tmp_path):
    docs = tmp_path / "docs"
    write_corpus(docs, n_files=2)
    kb = catalog.create("refresh", SMALL)
    kb.ingest([docs], progress=False)
    assert "zebracorn" not in kb.query("zebracorn", QueryOptions(mode="hybrid"))[0].text
    (docs / "new.md").write_text("The zebracorn mascot was retired in 2024.", encoding="utf-8")
    kb.ingest([docs], progress=False)
    assert "zebracorn" in kb.query("zebracorn", QueryOptions(mode="hybrid"))[0].text


@pytest.mark.parametrize("text", ["", "   ", "x" * 5000])
def test_bad_queries(catalog, text):
    kb = catalog.create("queries")
    with pytest.raises(InvalidQuery):
        kb.query(text)


def test_empty_kb_returns_nothing(catalog):
    assert catalog.create("empty-kb").query("anything") == []


def test_reopen_uses_recorded_settings(catalog, data_dir, tmp_path):
    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog

    docs = tmp_path / "docs"
    write_corpus(docs, n_files=1)
    catalog.create("persist", SMALL).ingest([docs], progress=False)
    reopened = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=data_dir)).open("persist")
    assert reopened.settings.chunking.chunk_size == 64
    assert reopened.stats().files == 1


def test_embedder_mismatch_is_refused(catalog, tmp_path):
    from retrieval import EmbedderMismatch
    from retrieval.embedders import bundled_minilm_path

    copy = tmp_path / "my-embedder"
    import shutil

    shutil.copytree(bundled_minilm_path(), copy)
    catalog.create("mismatch")
    with pytest.raises(
        EmbedderMismatch, match="was built with sentence-transformers:all-MiniLM-L6-v2"
    ):
        catalog.open("mismatch", embedder=EmbedderConfig(model=str(copy)))


def test_hybrid_hits_carry_cosine_similarity_like_vector_hits(catalog, tmp_path):
    from retrieval import QueryOptions

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text("Refunds are accepted within thirty days of delivery.")
    (docs / "volcano.md").write_text("Basalt lava flows cool into columnar joints over time.")
    kb = catalog.create("similarity-kb")
    kb.ingest([docs])
    question = "How many days do I have to ask for a refund?"
    vector = {h.id: h for h in kb.query(question, QueryOptions(mode="vector", top_k=2))}
    hybrid = kb.query(question, QueryOptions(mode="hybrid", top_k=2))
    assert hybrid and all(abs(h.similarity - vector[h.id].similarity) < 1e-4 for h in hybrid)
    assert all(h.similarity == h.score for h in vector.values())
    relevant = kb.query(question, QueryOptions(mode="hybrid", top_k=2, min_similarity=0.3))
    assert [h.citation.file_name for h in relevant] == ["refunds.md"]


def test_chunks_lists_every_chunk_in_document_order(catalog, tmp_path):
    kb = catalog.create("list-kb", SMALL)
    files = write_corpus(tmp_path / "docs", 3)
    kb.ingest([tmp_path / "docs"], progress=False)
    listed = kb.chunks()
    stored = all_chunks(kb)
    assert len(listed) == len(stored) and {c.id for c in listed} == set(stored)
    for chunk in listed:
        assert chunk.text == stored[chunk.id][0]
    order = [(c.citation.file_name, c.chunk_index) for c in listed]
    assert order == sorted(order)
    one = kb.chunks(file="doc-001.md")
    assert one and {c.citation.file_name for c in one} == {"doc-001.md"}
    assert [c.chunk_index for c in one] == list(range(one[0].chunk_count))
    assert kb.chunks(file=str(files[1])) == one  # a path works too


def test_chunks_of_an_unknown_file_names_the_files(catalog, tmp_path):
    kb = catalog.create("list-kb", SMALL)
    write_corpus(tmp_path / "docs", 2)
    kb.ingest([tmp_path / "docs"], progress=False)
    before = kb.collection.count()
    with pytest.raises(FileNotInKnowledgeBase) as info:
        kb.chunks(file="missing.md")
    assert str(info.value) == (
        "knowledge base 'list-kb' has no file 'missing.md' (files: doc-000.md, doc-001.md); "
        "give a file name or path from that list"
    )
    assert kb.collection.count() == before
