"""`known_names_only`: a question that names something no chunk contains finds no passages,
however similar the passages look ("What was Apple's revenue?" against another company's
report). Real MiniLM embedder, embedded Chroma."""

from __future__ import annotations

import pytest

from retrieval import QueryOptions
from retrieval.names import question_names
from tests.helpers.documents import knowledge_base_of

SHOP = {
    "returns.md": "# Returns\n\nKettle & Co takes back an unused K-Classic within 30 days of "
    "delivery for a full refund. Start a return from your order page.",
    "report.md": "# Results\n\nKettle & Co's revenue was $12.4 million in 2025, up from $10.1 "
    "million. Our Portland workshop employs 48 people.",
}


@pytest.mark.parametrize(
    ("question", "names"),
    [
        ("What was Apple's revenue in 2024?", ["Apple"]),
        ("How many moons does Jupiter have?", ["Jupiter"]),
        ("What rate does the Federal Reserve set?", ["Federal", "Reserve"]),
        ("How do I reset my iPhone?", ["iPhone"]),
        ("Apple revenue?", []),  # a question's first word is capitalised anyway
        ("What was the CEO's EBITDA in May?", []),  # acronyms and months are no names
        ("Hi, I'm Anna Lee. What was revenue? My name is Bo Chen.", []),  # the speaker
        ("Is the K-Classic covered? And what about Portland?", ["K-Classic", "Portland"]),
    ],
)
def test_question_names(question, names):
    assert question_names(question) == names


@pytest.fixture
def shop(catalog, tmp_path):
    return knowledge_base_of(catalog, "names-kb", tmp_path / "docs", SHOP)


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_a_name_no_chunk_contains_finds_nothing(shop, mode):
    names = QueryOptions(mode=mode, top_k=2, known_names_only=True)
    plain = names.model_copy(update={"known_names_only": False})
    for question in ("What was Apple's revenue in 2025?", "How many people work in Seattle?"):
        assert shop.query(question, plain), question  # similar passages exist ...
        assert shop.query(question, names) == [], question  # ... about something else
    for question in (
        "What was Kettle & Co's revenue in 2025?",  # "Kettle", "Co" are in the documents
        "How many people work at the Portland workshop?",
        "Can I return my K-Classics?",  # stemmed as the keyword index stems
        "how many people work there?",  # no name at all
    ):
        assert shop.query(question, names), question


def test_the_relevance_floor_ignores_the_setting(shop):
    """The floor's off-topic probes name things (the Sistine Chapel, Hamlet): measured without
    the name check, the floor is the same with it on or off."""
    plain = QueryOptions(mode="hybrid", top_k=2)
    assert shop.relevance_floor(plain) == shop.relevance_floor(
        plain.model_copy(update={"known_names_only": True})
    )
