"""The hand-made baseline bench (bench/retrieval_baselines.py): its scoring and its data."""

from __future__ import annotations

import json

import pytest

from bench.retrieval_baselines import (
    QUESTION_FILES,
    Question,
    answered,
    collapse,
    corpus_files,
    load_questions,
    paragraphs,
    rrf,
)


def test_rrf_rewards_agreement_and_keeps_every_unit():
    fused = rrf([[0, 1, 2], [2, 0, 3]])
    assert fused[0] == 0  # ranks 1 and 2 beat ranks 3 and 1
    assert sorted(fused) == [0, 1, 2, 3]


def test_answer_recall_collapses_whitespace_and_case():
    q = Question("q", ("Gross margin was 36.2%",), "specific")
    assert answered(["x", "the segment's gross\n  margin WAS 36.2% in 2025"], q)
    assert not answered(["gross margin was 36.3%"], q)


def test_paragraphs_split_at_blank_lines(tmp_path):
    doc = tmp_path / "r.md"
    doc.write_text("# Title\n\nFirst para\ncontinues.\n\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    units = [u.text for u in paragraphs([doc])]
    # the baselines read what the loaders give Hybrid: a table row carries its headers
    assert units == ["# Title", "First para\ncontinues.", "a: 1 | b: 2"]


def test_every_gold_answer_is_a_span_of_the_corpus():
    units = paragraphs(corpus_files())
    text = collapse("\n".join(u.text for u in units))
    questions = load_questions(QUESTION_FILES, text)
    assert len(questions) >= 120
    assert sum(q.kind == "context-poor" for q in questions) >= 40
    assert all(any(collapse(a) in text for a in q.answers) for q in questions)


def test_a_gold_answer_outside_the_corpus_is_refused(tmp_path):
    path = tmp_path / "q.jsonl"
    row = {"question": "q?", "answers": ["$9.99 billion"], "kind": "specific"}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(
        SystemExit, match=r"1 gold answers are not in the corpus: q.jsonl: '\$9.99 billion'"
    ):
        load_questions([path], "revenue was $412.6 million")
