"""Each app's answer to each labelled question scored, and the scores summed up per app.

- correct: a gold form is in the answer (`answers.answer_correct`); None when the case has no
  gold answers or is unanswerable.
- cited_gold / given_gold: the answer cites (citations) / was given (sources) a passage from the
  labelled file and page.
- abstained: the app gave its no-context answer (`hybrid.no_context`, or its fixed message);
  right when the case is unanswerable, wrong otherwise.
- grounding precision/recall: an answer flagged as not grounded (`grounding.grounded` false)
  is the flag's prediction "this answer is wrong"; checked against `correct`, over answerable
  cases that got a generated answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hybrid.evaluation.answers import answer_correct
from hybrid.evaluation.labelled import LabelledCase
from hybrid.evaluation.responders import AppReply


@dataclass(frozen=True)
class CaseResult:
    line: int
    question: str
    answerable: bool
    multi_turn: bool
    answer: str
    correct: bool | None
    cited_gold: bool | None
    given_gold: bool | None
    abstained: bool
    grounded: bool | None
    latency_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    voice: float | None = None
    judge: bool | None = None
    error: str | None = None

    @property
    def abstention_right(self) -> bool:
        return self.abstained != self.answerable

    def to_dict(self) -> dict:
        return asdict(self)


def _same_source(ref: dict, case: LabelledCase) -> bool:
    name = ref.get("file_name") or ""
    if name != case.source and not str(ref.get("source") or "").endswith("/" + str(case.source)):
        return False
    return case.page is None or ref.get("page") == case.page


def score_case(case: LabelledCase, reply: AppReply, no_context_message: str | None) -> CaseResult:
    notes = reply.notes or {}
    text = reply.text or ""
    abstained = bool(notes.get("no_context")) or (
        no_context_message is not None and text.strip() == no_context_message.strip()
    )
    has_source = case.answerable and case.source is not None and reply.error is None
    grounding = notes.get("grounding") or {}
    generated = reply.error is None and not abstained
    usage = reply.usage or {}
    return CaseResult(
        line=case.line,
        question=case.question,
        answerable=case.answerable,
        multi_turn=case.multi_turn,
        answer=text,
        correct=answer_correct(case.answers, text)
        if case.answerable and case.answers and reply.error is None
        else None,
        cited_gold=any(_same_source(c, case) for c in notes.get("citations") or [])
        if has_source
        else None,
        given_gold=any(_same_source(s, case) for s in notes.get("sources") or [])
        if has_source
        else None,
        abstained=abstained,
        grounded=bool(grounding["grounded"]) if generated and "grounded" in grounding else None,
        latency_s=reply.latency_s,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        error=reply.error,
    )


def _rate(values: Sequence[bool | None]) -> dict:
    scored = [v for v in values if v is not None]
    return {
        "rate": (sum(scored) / len(scored)) if scored else None,
        "hits": int(sum(scored)),
        "n": len(scored),
    }


def grounding_quality(results: Sequence[CaseResult]) -> dict:
    """Precision and recall of "not grounded" as a detector of wrong answers."""
    pairs = [
        (r.grounded is False, r.correct is False)
        for r in results
        if r.grounded is not None and r.correct is not None
    ]
    flagged_wrong = sum(1 for f, w in pairs if f and w)
    flagged = sum(1 for f, _ in pairs if f)
    wrong = sum(1 for _, w in pairs if w)
    return {
        "precision": flagged_wrong / flagged if flagged else None,
        "recall": flagged_wrong / wrong if wrong else None,
        "flagged": flagged,
        "wrong": wrong,
        "n": len(pairs),
    }


def summarise(app: str, results: Sequence[CaseResult]) -> dict:
    """One app's figures (rates as fractions, None where nothing was scored)."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    latencies = [r.latency_s for r in results if r.error is None]
    completion = [r.completion_tokens for r in results if r.completion_tokens is not None]
    prompt = [r.prompt_tokens for r in results if r.prompt_tokens is not None]
    timed = [r.latency_s for r in results if r.completion_tokens is not None]
    voices = [r.voice for r in results if r.voice is not None]
    return {
        "app": app,
        "questions": len(results),
        "errors": sum(1 for r in results if r.error),
        "correctness": _rate([r.correct for r in results]),
        "correctness_single_turn": _rate([r.correct for r in results if not r.multi_turn]),
        "correctness_multi_turn": _rate([r.correct for r in results if r.multi_turn]),
        "citation": _rate([r.cited_gold for r in results]),
        "given_gold_passage": _rate([r.given_gold for r in results]),
        "abstention": _rate([r.abstention_right for r in results if r.error is None]),
        "abstained_when_unanswerable": _rate([r.abstained for r in unanswerable]),
        "abstained_when_answerable": _rate([r.abstained for r in answerable if r.error is None]),
        "voice": {"mean": float(np.mean(voices)) if voices else None, "n": len(voices)},
        "judge": _rate([r.judge for r in results]),
        "grounding": grounding_quality(results),
        "latency_s": {
            "mean": float(np.mean(latencies)) if latencies else None,
            "p50": float(np.percentile(latencies, 50)) if latencies else None,
            "p95": float(np.percentile(latencies, 95)) if latencies else None,
        },
        "tokens": {
            "prompt": int(sum(prompt)) if prompt else None,
            "completion": int(sum(completion)) if completion else None,
            "completion_per_s": sum(completion) / sum(timed) if completion and sum(timed) else None,
        },
    }
