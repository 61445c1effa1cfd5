"""Follow-up questions: a short question that refers back is searched with the user questions
before it (real MiniLM embedder, embedded Chroma, the example's annual report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.apps.followups import is_follow_up, retrieval_query
from hybrid.apps.pipeline import AppPipeline
from hybrid.apps.spec import AppSpec

REPORT = Path(__file__).resolve().parents[2] / "examples" / "ceo-report-qa" / "docs"


@pytest.mark.parametrize(
    ("message", "follows"),
    [
        ("And the year before?", True),
        ("What about 2024?", True),
        ("And gross margin?", True),
        ("Does it need descaling?", True),
        ("What was it in 2024?", True),
        ("Why?", True),
        ("What was total revenue in 2025?", False),
        ("How much did operating income grow last year?", False),
        ("How do I descale the BB-100?", False),
        ("What is the price of the K-Classic?", False),
        ("Who is the CEO?", False),
        ("Is there any benefit to registering my machine?", False),
    ],
)
def test_follow_ups_are_told_from_questions_that_stand_alone(message, follows):
    assert is_follow_up(message) is follows


def user(text):
    return {"role": "user", "content": text}


def test_query_takes_earlier_questions_only_for_a_follow_up():
    turns = [
        user("What was total revenue in 2025?"),
        {"role": "assistant", "content": "$412.6 million."},
        user([{"type": "text", "text": "And the year before?"}]),
    ]
    assert retrieval_query(turns) == "What was total revenue in 2025? And the year before?"
    assert retrieval_query([*turns, user("Who is the CEO?")]) == "Who is the CEO?"
    chain = [user("What was net income in 2025?"), user("And in 2024?"), user("Why?")]
    assert retrieval_query(chain) == "What was net income in 2025? And in 2024? Why?"
    assert retrieval_query(chain, turns=1) == "And in 2024? Why?"
    assert retrieval_query([]) == ""


@pytest.fixture(scope="module")
def report_kb(tmp_path_factory):
    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog

    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=tmp_path_factory.mktemp("kb")))
    kb = catalog.create("northwind-report")
    kb.ingest([REPORT], progress=False)
    return kb


def pipeline(kb, follow_ups: str) -> AppPipeline:
    spec = AppSpec.model_validate(
        {
            "name": "northwind-base",
            "knowledge_base": "northwind-report",
            "persona": "You are Margaret Okafor, CEO of Northwind Robotics.",
            "retrieval": {"top_k": 2, "mode": "hybrid", "follow_ups": follow_ups},
        }
    )
    return AppPipeline(spec, kb)


def test_the_year_before_retrieves_the_prior_year_revenue(report_kb):
    conversation = [
        user("What was total revenue in 2025?"),
        {"role": "assistant", "content": "Total revenue was $412.6 million."},
        user("And the year before?"),
    ]
    aware = pipeline(report_kb, "rule")
    passages = aware.passages("And the year before?", {"messages": conversation})
    assert any("$349.7 million" in p.text for p in passages), [p.page for p in passages]
    # the same conversation searched with its last message alone finds nothing of the kind
    alone = pipeline(report_kb, "off").passages("And the year before?", {"messages": conversation})
    assert not any("$349.7 million" in p.text for p in alone)
    # a question that stands alone is searched alone
    standalone = [*conversation, user("How many people did Northwind employ at year end?")]
    assert aware.search_query(standalone[-1]["content"], standalone) == standalone[-1]["content"]
