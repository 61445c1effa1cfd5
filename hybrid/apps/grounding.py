"""Citations and the grounding check of an answer against the passages it was given.

- Citations: the `[n]` markers in the answer (also `[1, 3]` and `[1][3]`) mapped to the
  numbered passages; markers with no such passage are reported as unknown.
- Grounding: every number (amounts, percentages, years; `$1,204.5` and `1204.50` are the same
  number; a single digit counts only with a unit, "5 years" but not "3 steps") and every multi-word proper name ("Margaret Okafor", "Kettle Classic") in the answer
  must appear in a passage, the question or the persona. Those that do not are flagged: that is
  how a user sees a style adapter leaking "facts" of its own. A heuristic, on purpose cheap and
  explainable: it never blocks an answer, it labels it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from hybrid.apps.prompt import Passage

_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_NUMBER = re.compile(r"(?<![\w.])[$€£]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[$€£]?\d+(?:\.\d+)?")
_NAME = re.compile(
    r"\b[A-Z][a-z]+(?:[-'][A-Za-z]+)?(?:\s+(?:&\s+)?[A-Z][a-z]+(?:[-'][A-Za-z]+)?)+\b"
)
_UNIT = re.compile(
    r"[\s-]*(?:%|percent|per ?cent|years?|months?|weeks?|days?|hours?|minutes?|million|billion"
    r"|thousand|times|dollars?|euros?|pounds?|[kKmM]?[gG]\b|litres?|liters?|bar\b)",
    re.IGNORECASE,
)
_YEAR = re.compile(r"^(19|20)\d\d$")
_LEADING_WORDS = {
    "The", "A", "An", "Our", "We", "In", "On", "At", "This", "That", "These", "Those", "Dear",
    "Yes", "No", "Hello", "Hi", "Thanks", "Thank", "Please", "Kind", "Best", "If", "When", "For",
    "And", "But", "So", "As", "It", "Its", "My", "Your", "Their", "His", "Her", "To", "From",
}  # fmt: skip


def cited_numbers(answer: str) -> list[int]:
    found: set[int] = set()
    for group in _MARKER.findall(answer):
        found.update(int(n) for n in group.split(","))
    return sorted(found)


def citations(answer: str, passages: Sequence[Passage]) -> tuple[list[dict], list[int]]:
    """(citations, cited numbers with no passage).

    A passage is cited when the answer names it with a marker (`"how": "marker"`), or when it
    holds a number or name the answer states (`"how": "match"`, post-hoc attribution: small
    models rarely write markers, but their figures still come from somewhere).
    """
    by_number = {p.number: p for p in passages}
    marked = cited_numbers(answer)
    out = [{**by_number[n].citation(), "how": "marker"} for n in marked if n in by_number]
    claims_numbers = {n for n in numbers_in(answer) if not _YEAR.match(n)}  # years are weak
    claims_names = {n.lower() for n in names_in(_MARKER.sub(" ", answer))}
    for passage in passages:
        if passage.number in marked:
            continue
        text = passage.text.lower()
        if claims_numbers & numbers_in(passage.text) or any(n in text for n in claims_names):
            out.append({**passage.citation(), "how": "match"})
    return sorted(out, key=lambda c: c["index"]), [n for n in marked if n not in by_number]


def _canonical(token: str) -> str | None:
    cleaned = token.lstrip("$€£").replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return format(value.normalize(), "f")


def numbers_in(text: str) -> set[str]:
    """Canonical numbers in `text`, without citation markers. A single digit counts only with a
    unit after it ("5 years", "3%", "2 million"): "3 steps" is phrasing, not a figure."""
    text = _MARKER.sub(" ", text)
    found = set()
    for match in _NUMBER.finditer(text):
        canonical = _canonical(match.group())
        if canonical is None:
            continue
        if canonical.isdigit() and len(canonical) == 1 and not _UNIT.match(text, match.end()):
            continue
        found.add(canonical)
    return found


def names_in(text: str) -> set[str]:
    names = set()
    for match in _NAME.findall(text):
        words = match.split()
        while words and words[0] in _LEADING_WORDS:
            words = words[1:]
        if len(words) >= 2:
            names.add(" ".join(words))
    return names


@dataclass(frozen=True)
class Grounding:
    checked: int
    """How many numbers and names the answer contains."""
    ungrounded: list[dict] = field(default_factory=list)
    """[{"text", "kind": "number" | "name"}] found in no passage, nor the question or persona."""
    unknown_citations: list[int] = field(default_factory=list)

    @property
    def grounded(self) -> bool:
        return not self.ungrounded and not self.unknown_citations

    def to_dict(self) -> dict:
        return {
            "grounded": self.grounded,
            "checked": self.checked,
            "ungrounded": self.ungrounded,
            "unknown_citations": self.unknown_citations,
        }


def check_grounding(
    answer: str, passages: Sequence[Passage], *, question: str = "", persona: str = ""
) -> Grounding:
    evidence = "\n".join([*(p.text for p in passages), question, persona])
    known_numbers = numbers_in(evidence)
    lowered = evidence.lower()
    answer_numbers = numbers_in(answer)
    answer_names = names_in(_MARKER.sub(" ", answer))
    ungrounded = [{"text": n, "kind": "number"} for n in sorted(answer_numbers - known_numbers)]
    ungrounded += [
        {"text": name, "kind": "name"}
        for name in sorted(answer_names)
        if name.lower() not in lowered
    ]
    _, unknown = citations(answer, passages)
    return Grounding(len(answer_numbers) + len(answer_names), ungrounded, unknown)
