"""The labelled retrieval check on the example documents: hit@k and MRR, vector vs hybrid.

The CEO report's questions run against a knowledge base of the report PDF; each brand's
questions (the `brand` field) against that brand's own knowledge base. Used by the slow test
tier (tests/retrieval/test_labelled_examples.py) and by `make bench` (bench/retrieval_bench.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from retrieval import KnowledgeBaseCatalog
from retrieval.evaluation import LabelledQuestion, RetrievalEvaluation, evaluate, retrieval_case

EXAMPLES = Path(__file__).resolve().parent
SETS = {
    "ceo-report-qa": (
        EXAMPLES / "ceo-report-qa" / "docs",
        EXAMPLES / "ceo-report-qa" / "eval" / "questions.jsonl",
        None,
    ),
    "brewbird": (
        EXAMPLES / "branded-chatbot" / "brands" / "brewbird" / "kb",
        EXAMPLES / "branded-chatbot" / "eval" / "questions.jsonl",
        "brewbird",
    ),
    "kettleandco": (
        EXAMPLES / "branded-chatbot" / "brands" / "kettleandco" / "kb",
        EXAMPLES / "branded-chatbot" / "eval" / "questions.jsonl",
        "kettleandco",
    ),
}


def questions_of(path: Path, brand: str | None) -> list[LabelledQuestion]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [
        LabelledQuestion.model_validate(r)
        for r in rows
        if brand in (None, r.get("brand")) and retrieval_case(r)
    ]


def run_check(catalog: KnowledgeBaseCatalog, depth: int = 10) -> dict[str, RetrievalEvaluation]:
    """Ingest each example's documents into its own knowledge base and score both modes."""
    results = {}
    for name, (docs, questions, brand) in SETS.items():
        kb = catalog.create(name)
        kb.ingest([docs], progress=False)
        results[name] = evaluate(kb, questions_of(questions, brand), depth=depth)
    return results


def table(results: dict[str, RetrievalEvaluation]) -> str:
    ks = sorted(next(iter(results.values())).modes[0].hit_at)
    lines = [
        "| documents | mode | questions | " + " | ".join(f"hit@{k}" for k in ks) + " | MRR@10 |",
        "|" + "---|" * (4 + len(ks)),
    ]
    for name, result in results.items():
        for m in result.modes:
            cells = " | ".join(f"{m.hit_at[k]:.2f}" for k in ks)
            lines.append(f"| {name} | {m.mode} | {m.questions} | {cells} | {m.mrr:.2f} |")
    return "\n".join(lines)
