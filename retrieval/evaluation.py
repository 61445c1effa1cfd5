"""Labelled retrieval check: questions with the passage that answers each -> hit@k and MRR.

A question file is JSON Lines, one object per line::

    {"question": "How much did revenue grow?", "source": "report.pdf", "page": 4,
     "evidence": "revenue rose 18% to $412.6 million"}

`source` is the document's file name, `page` is 1-based (null for documents without pages), and
`evidence` is a short exact snippet of the document that answers the question. A retrieved chunk
is relevant when it comes from that file and page and holds the evidence (or at least half of it,
when the evidence straddles two chunks).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from retrieval.config import QueryOptions
from retrieval.errors import RetrievalError
from retrieval.search import Hit


class LabelledQuestion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    question: str
    source: str
    page: int | None = None
    evidence: str


@dataclass
class ModeScores:
    mode: str
    questions: int
    hit_at: dict[int, float]
    mrr: float
    misses: list[str] = field(default_factory=list)


@dataclass
class RetrievalEvaluation:
    knowledge_base: str
    depth: int
    modes: list[ModeScores]

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        ks = sorted(self.modes[0].hit_at) if self.modes else []
        head = (
            "| mode | questions | " + " | ".join(f"hit@{k}" for k in ks) + f" | MRR@{self.depth} |"
        )
        lines = [head, "|" + "---|" * (3 + len(ks))]
        for m in self.modes:
            cells = " | ".join(f"{m.hit_at[k]:.3f}" for k in ks)
            lines.append(f"| {m.mode} | {m.questions} | {cells} | {m.mrr:.3f} |")
        return "\n".join(lines)


def retrieval_case(row: object) -> bool:
    """Whether a labelled line is a retrieval case. App evaluation (`hybrid eval app`) shares the
    file: its unanswerable questions (`"answerable": false`, nothing to find) and follow-ups
    (`messages`: prior turns the question depends on) are not single-query retrieval cases."""
    if not isinstance(row, dict):
        return True  # reported as a bad line by the validation
    return row.get("answerable", True) is not False and not row.get("messages")


def load_questions(path: Path) -> list[LabelledQuestion]:
    """Read a question file; every bad line is reported with its number, all at once. Lines
    that are not retrieval cases (see `retrieval_case`) are skipped."""
    questions, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if retrieval_case(row):
                questions.append(LabelledQuestion.model_validate(row))
        except (json.JSONDecodeError, ValidationError) as exc:
            problems.append(f"line {number}: {str(exc).splitlines()[0]}")
    if problems:
        raise RetrievalError(f"{path}: {len(problems)} bad line(s): " + "; ".join(problems))
    if not questions:
        raise RetrievalError(f"{path}: no questions found")
    return questions


def _collapse(text: str) -> str:
    return " ".join(text.split())


def is_relevant(hit: Hit, question: LabelledQuestion) -> bool:
    if hit.citation.file_name != question.source:
        return False
    if question.page is not None and hit.citation.page != question.page:
        return False
    evidence, text = _collapse(question.evidence), _collapse(hit.text)
    if evidence in text:
        return True
    half = max(1, len(evidence) // 2)
    return any(
        text.endswith(evidence[:n]) or text.startswith(evidence[-n:])
        for n in range(half, len(evidence))
    )


def evaluate(
    kb,
    questions: Sequence[LabelledQuestion],
    modes: Sequence[str] = ("vector", "hybrid"),
    ks: Sequence[int] = (1, 3, 5),
    depth: int = 10,
) -> RetrievalEvaluation:
    """Score each mode on the labelled questions (hit@k: share of questions with a relevant
    passage in the top k; MRR: mean of 1/rank of the first relevant passage within `depth`)."""
    results = []
    for mode in modes:
        ranks: list[int | None] = []
        misses = []
        for q in questions:
            hits = kb.query(q.question, QueryOptions(top_k=depth, mode=mode))
            rank = next((i for i, h in enumerate(hits, 1) if is_relevant(h, q)), None)
            ranks.append(rank)
            if rank is None:
                misses.append(q.question)
        n = len(questions)
        results.append(
            ModeScores(
                mode=mode,
                questions=n,
                hit_at={k: round(sum(1 for r in ranks if r and r <= k) / n, 4) for k in ks},
                mrr=round(sum(1 / r for r in ranks if r) / n, 4),
                misses=misses,
            )
        )
    return RetrievalEvaluation(knowledge_base=kb.name, depth=depth, modes=results)
