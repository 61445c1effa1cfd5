"""The labelled question file of `hybrid eval app` (JSON Lines, one case a line).

Each line extends the retrieval check's format (retrieval/evaluation.py)::

    {"question": "What gross margin did the company achieve in 2025?",
     "answers": ["41.3%"],                       # accepted forms; one must be in the answer
     "source": "report.pdf", "page": 8,          # where the gold evidence is
     "evidence": "gross margin improved by 1.5 percentage points to 41.3%"}
    {"question": "What is the best recipe for banana bread?", "answerable": false}
    {"messages": [{"role": "user", "content": "What was revenue in 2025?"},
                  {"role": "assistant", "content": "$412.6 million."}],
     "question": "And the year before?", "answers": ["$349.7 million"], ...}

`messages` are prior turns sent before `question`. Other keys (e.g. `brand`) are kept in
`fields` so a run can select cases (`--only brand=brewbird`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hybrid.config_files import Frozen
from hybrid.errors import UsageError


class Turn(Frozen):
    role: Literal["user", "assistant", "system"]
    content: str


class LabelledCase(BaseModel):
    """One labelled question; `line` is its 1-based line in the file."""

    model_config = ConfigDict(frozen=True, extra="allow")

    question: str = Field(min_length=1)
    messages: tuple[Turn, ...] = ()
    """Prior turns of the conversation, sent before `question`."""
    answers: tuple[str, ...] = ()
    """Accepted forms of the gold answer (a figure with its unit, or a short span)."""
    answerable: bool = True
    """False: the knowledge base does not hold the answer; the app should abstain."""
    source: str | None = None
    page: int | None = None
    evidence: str | None = None
    line: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> LabelledCase:
        if not self.answerable and self.answers:
            raise ValueError("an unanswerable case (answerable: false) cannot list answers")
        if any(not a.strip() for a in self.answers):
            raise ValueError("answers must not be empty strings")
        return self

    @property
    def fields(self) -> dict:
        return dict(self.model_extra or {})

    @property
    def multi_turn(self) -> bool:
        return bool(self.messages)

    def chat_messages(self) -> list[dict]:
        """The request's messages: the prior turns, then the question."""
        turns = [{"role": t.role, "content": t.content} for t in self.messages]
        return [*turns, {"role": "user", "content": self.question}]


def read_jsonl(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-empty line of a JSON Lines file (`what` names the file
    in the errors: the evaluation reads labelled questions, style replies and base replies).

    Raises:
        UsageError: the file is missing, or a line is not JSON (named `file:line`).
    """
    if not path.is_file():
        raise UsageError(f"{path}: no such {what}")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc.msg})") from None


def read_cases(path: Path, only: dict[str, str] | None = None) -> list[LabelledCase]:
    """Read a labelled file; `only` keeps the cases whose field equals each given value.

    Raises:
        UsageError: missing file, a malformed line (named `file:line`), or no cases.
    """
    cases = []
    for number, raw in read_jsonl(path, "labelled question file"):
        if not isinstance(raw, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object, got {type(raw).__name__}")
        raw.pop("line", None)
        try:
            cases.append(LabelledCase.model_validate({**raw, "line": number}))
        except ValidationError as exc:
            raise UsageError(f"{path}:{number}: {_first_problem(exc)}") from None
    if not cases:
        raise UsageError(f"{path}:1: no labelled questions in the file (it is empty)")
    if only:
        cases = [c for c in cases if all(str(c.fields.get(k)) == v for k, v in only.items())]
        if not cases:
            wanted = ", ".join(f"{k}={v}" for k, v in only.items())
            raise UsageError(f"{path}: no labelled questions match {wanted}")
    return cases


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}{more}" if where else f"{message}{more}"
