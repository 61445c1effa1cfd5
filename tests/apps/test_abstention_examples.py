"""Abstention training examples: questions the shown passages do not answer, answered with the
app's no-context message; off-topic questions with their own passages, knowledge-base questions
shown only passages without their subject; labelled questions never asked; budget respected."""

from __future__ import annotations

import re

import pytest

from hybrid.apps.abstention_examples import abstention_examples
from hybrid.apps.grounded_examples import figure_statements, normalise_question
from hybrid.apps.prompt import Passage
from tests.helpers.report_passages import ceo_app_spec, passages_of, report_passages


@pytest.fixture(scope="module")
def report() -> list[Passage]:
    return report_passages()


@pytest.fixture(scope="module")
def spec():
    return ceo_app_spec()


OFF_TOPIC = [
    ("How do I make fluffy pancakes without eggs?", "Headcount grew to 1,240 people."),
    ("What causes the northern lights?", "Our Brno plant assembled 3,100 robots."),
    ("Who painted the Sistine Chapel ceiling?", "Lidar prices fell 12% in the year."),
]


def off_topic() -> list[tuple[str, list[Passage]]]:
    return [(q, passages_of(f"{text} " * 4, "found.pdf")) for q, text in OFF_TOPIC]


def shown_passages(system: str) -> list[str]:
    return re.split(r"\n\[\d+\] \([^)]*\)\n", system)[1:]


def test_every_answer_is_the_no_context_message_and_both_kinds_come(report, spec):
    made = abstention_examples(report, spec, count=6, seed=3, off_topic=off_topic())
    assert len(made) == 6
    assert {m.messages[2].content for m in made} == {spec.no_context.message}
    kinds = [m.origin.split("#")[0] for m in made]
    assert kinds.count("abstain:off-topic") == 3 and all(
        k == "abstain:off-topic" or k == "abstain:report.pdf, p. 1" for k in kinds
    )
    asked = [m.messages[1].content for m in made]
    for question, text in OFF_TOPIC:  # each off-topic question once, with its own passages
        (example,) = [m for m in made if m.messages[1].content == question]
        assert all(text in p for p in shown_passages(example.messages[0].content))
    assert len(set(asked)) == len(asked)


def test_knowledge_base_questions_are_shown_no_passage_with_their_subject(report, spec):
    subjects = {s.subject for s in figure_statements(report)}
    made = abstention_examples(report, spec, count=12, seed=5)
    assert len(made) == 12
    for example in made:
        question = example.messages[1].content.lower()
        shown = " ".join(shown_passages(example.messages[0].content)).lower()
        subject = max((s for s in subjects if s.split()[-1] in question), key=len, default=None)
        assert subject is not None, question
        assert subject.split()[-1] not in re.findall(r"[a-z][a-z'-]+", shown), question
        assert 1 <= len(shown_passages(example.messages[0].content)) <= spec.retrieval.top_k


def test_labelled_questions_are_never_asked_and_nothing_comes_without_sources(report, spec):
    held = [OFF_TOPIC[0][0], OFF_TOPIC[1][0].upper()]
    made = abstention_examples(report, spec, count=10, seed=1, off_topic=off_topic(), exclude=held)
    asked = {normalise_question(m.messages[1].content) for m in made}
    assert not asked & {normalise_question(q) for q in held}
    assert abstention_examples([], spec, count=5) == []
    assert abstention_examples(report, spec, count=0, off_topic=off_topic()) == []


def test_a_tight_budget_drops_passages(report, spec, tiny_llama_dir):
    from hybrid.apps.budget import PromptBudget

    loose = PromptBudget(tiny_llama_dir, 10**6)
    full = abstention_examples(report, spec, count=4, seed=2, budget=loose)
    tokens = [
        loose.count([{"role": m.role, "content": m.content} for m in e.messages]) for e in full
    ]
    tight = PromptBudget(tiny_llama_dir, max(tokens) - 40)
    narrowed = abstention_examples(report, spec, count=4, seed=2, budget=tight)
    assert len(narrowed) == 4
    for example in narrowed:
        messages = [{"role": m.role, "content": m.content} for m in example.messages]
        assert tight.count(messages) <= tight.max_model_len
