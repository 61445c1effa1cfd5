"""`min_similarity: auto`: the knowledge base's own relevance floor, measured from off-topic
questions (retrieval/relevance.py), with the real MiniLM embedder and embedded Chroma."""

from __future__ import annotations

import os

import pydantic
import pytest

from retrieval import QueryOptions
from retrieval.relevance import FLOOR_QUANTILE, OFF_TOPIC_QUESTIONS
from tests.helpers.documents import knowledge_base_of

SHOP = {
    "returns.md": "# Returns\n\nYou can return an unused kettle within 30 days of delivery for "
    "a full refund. Start a return from your order page; we email a prepaid label.",
    "descaling.md": "# Descaling\n\nDescale the K-Classic every two months with citric acid. "
    "Fill the tank to the MAX line, add one sachet, boil, wait 20 minutes and rinse twice.",
    "warranty.md": "# Warranty\n\nEvery Kettle & Co kettle carries a two-year warranty that "
    "covers the heating element and the thermostat, not limescale damage.",
}


@pytest.fixture
def shop(catalog, tmp_path):
    docs = tmp_path / "docs"
    return knowledge_base_of(catalog, "floor-kb", docs, SHOP), docs


SEARCH = QueryOptions(mode="hybrid", top_k=3)


def best(kb, question: str) -> float:
    return max(h.similarity for h in kb.query(question, SEARCH))


def test_the_floor_is_the_quantile_of_off_topic_questions_best_similarity(shop):
    kb, _ = shop
    floor = kb.relevance_floor(SEARCH)
    assert len(OFF_TOPIC_QUESTIONS) >= 50 and len(set(OFF_TOPIC_QUESTIONS)) == len(
        OFF_TOPIC_QUESTIONS
    )
    scores = sorted(best(kb, q) for q in OFF_TOPIC_QUESTIONS)
    below = sum(s < floor for s in scores) / len(scores)
    assert FLOOR_QUANTILE - 0.03 <= below <= FLOOR_QUANTILE + 0.02, (floor, scores[-5:])
    assert -1 < floor < 1


def test_auto_keeps_questions_about_the_documents_and_drops_unrelated_ones(shop):
    kb, _ = shop
    auto = QueryOptions(mode="hybrid", top_k=3, min_similarity="auto")
    for question in (
        "How long do I have to send a kettle back?",
        "How often should I descale my kettle?",
        "Does the warranty cover limescale?",
    ):
        assert kb.query(question, auto), question
    for question in (
        "Who won the 2018 Tour de France?",  # none of these is among the floor's questions
        "What is the half-life of carbon-14?",
        "Recommend a podcast about medieval history.",
    ):
        assert kb.query(question, auto) == [], (question, best(kb, question))


def test_the_floor_is_measured_once_per_revision(shop, monkeypatch):
    import retrieval.knowledge_base as module

    kb, docs = shop
    calls = []
    real = module.relevance_floor
    monkeypatch.setattr(module, "relevance_floor", lambda *a: calls.append(1) or real(*a))
    first = kb.relevance_floor(SEARCH)
    kb.query("descale", SEARCH.model_copy(update={"min_similarity": "auto", "context_chars": 0}))
    assert kb.relevance_floor(SEARCH) == first and len(calls) == 1  # same search, same floor
    kb.relevance_floor(QueryOptions(mode="vector", top_k=3))
    assert len(calls) == 2  # another way of searching has a floor of its own
    (docs / "more.md").write_text("# Colours\n\nThe K-Classic comes in sage, cream and slate.")
    kb.ingest([docs], progress=False)
    assert len(calls) == 4  # new chunks: ingestion measured both floors in use again
    kb.relevance_floor(SEARCH)
    kb.relevance_floor(QueryOptions(mode="vector", top_k=3))
    assert len(calls) == 4
    kb.relevance_floor(QueryOptions(mode="vector", top_k=4))
    assert len(calls) == 5


def test_empty_knowledge_base_has_no_floor_and_bad_values_are_refused(catalog):
    kb = catalog.create("empty-floor-kb")
    assert kb.relevance_floor() is None
    assert kb.query("anything", QueryOptions(min_similarity="auto")) == []
    with pytest.raises(pydantic.ValidationError, match="min_similarity"):
        QueryOptions(min_similarity="automatic")


@pytest.fixture
def searches(monkeypatch):
    """Counts the searches the knowledge base runs (a floor costs one per off-topic question)."""
    import retrieval.knowledge_base as module

    calls = []
    real = module.search
    monkeypatch.setattr(module, "search", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    return calls


def test_two_apps_opening_one_knowledge_base_measure_its_floor_once(shop, catalog, searches):
    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog

    kb, _ = shop
    auto = SEARCH.model_copy(update={"min_similarity": "auto"})
    first, second = catalog.open(kb.name), catalog.open(kb.name)  # as two apps do
    first.prepare(auto)
    assert len(searches) == len(OFF_TOPIC_QUESTIONS)
    assert set(searches) == set(OFF_TOPIC_QUESTIONS)
    second.prepare(auto)
    other_catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=catalog.store.path))
    assert other_catalog.open(kb.name).relevance_floor(SEARCH) == first.relevance_floor(SEARCH)
    assert len(searches) == len(OFF_TOPIC_QUESTIONS)  # no second measurement
    assert second.query("How often should I descale my kettle?", auto)
    assert len(searches) == len(OFF_TOPIC_QUESTIONS) + 1


def test_a_new_process_reads_the_saved_floor_until_the_chunks_change(shop, searches):
    import json

    from retrieval.floor_cache import FILE, FLOORS

    kb, docs = shop
    floor = kb.relevance_floor(SEARCH)
    saved = json.loads((kb.keyword_folder / FILE).read_text())
    assert saved["revision"] == kb._revision() and floor in saved["floors"].values()
    FLOORS.clear()  # what a new process starts with
    searches.clear()
    assert kb.relevance_floor(SEARCH) == floor and searches == []  # read, not measured
    old = kb.keyword_folder / FILE
    os.utime(old, (1, 1))  # the keyword index's clean-up of old files must leave it
    (docs / "more.md").write_text("# Colours\n\nThe K-Classic comes in sage, cream and slate.")
    FLOORS.clear()  # ingestion in a new process: it finds the floor in use in the file
    kb.ingest([docs], progress=False)
    assert old.exists()
    assert len(searches) == len(OFF_TOPIC_QUESTIONS)  # new chunks: measured again, by ingest
    saved = json.loads((kb.keyword_folder / FILE).read_text())
    assert saved["revision"] == kb._revision() and len(saved["floors"]) == 1
    FLOORS.clear()
    assert kb.relevance_floor(SEARCH) == next(iter(saved["floors"].values()))
    assert len(searches) == len(OFF_TOPIC_QUESTIONS)  # the next process reads it


def test_an_unreadable_saved_floor_is_measured_again(shop, searches, caplog):
    from retrieval.floor_cache import FILE, FLOORS

    kb, _ = shop
    floor = kb.relevance_floor(SEARCH)
    (kb.keyword_folder / FILE).write_text('{"format": 1, "revision": ')  # cut short
    FLOORS.clear()
    searches.clear()
    assert kb.relevance_floor(SEARCH) == floor
    assert len(searches) == len(OFF_TOPIC_QUESTIONS)
    assert "relevance floors" in caplog.text and "unreadable" in caplog.text
