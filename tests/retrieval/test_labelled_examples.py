"""The labelled retrieval check on the example documents (real PDF and markdown, real MiniLM,
real Chroma): both modes find the answering passage for most questions, and the scores are
printed as the table `make bench` puts in bench/results/retrieval.md."""

from __future__ import annotations

import pytest

from examples.retrieval_check import run_check, table

pytestmark = pytest.mark.slow


def test_labelled_questions_on_the_example_documents(catalog):
    results = run_check(catalog)
    print("\n" + table(results))
    for name, result in results.items():
        scores = {m.mode: m for m in result.modes}
        assert scores["vector"].questions == scores["hybrid"].questions >= 15
        for mode, m in scores.items():
            assert m.hit_at[5] >= 0.7, f"{name} {mode}: hit@5 {m.hit_at[5]:.2f}, misses {m.misses}"
            assert m.mrr >= 0.5, f"{name} {mode}: MRR {m.mrr:.2f}"
