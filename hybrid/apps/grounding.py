"""Citations and the grounding check of an answer against the passages it was given.

- Citations: the `[n]` markers in the answer (also `[1, 3]` and `[1][3]`) mapped to the
  numbered passages; markers with no such passage are reported as unknown.
- Grounding: each figure of the answer is a claim (`hybrid.apps.claims`: value with its scale,
  unit, period, subject and the words around it), and is flagged unless a passage gives the same
  quantity for a compatible subject, period and measure: "every 1 week" against "every 2
  months", "$1.1 billion" against "$1.1 million", a 2024 figure given for 2025 or the BB-100's
  price given for the BB-200 Pro are all flagged, each with a reason. Multi-word proper names and
  product codes must appear in a passage, the question or the persona. Cheap (a few ms an
  answer) and explainable: it never blocks an answer, it labels it. Measured on a planted-error
  set: `hybrid.apps.grounding_eval`, `python -m bench.grounding_bench`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from hybrid.apps.claims import MARKER as _MARKER
from hybrid.apps.claims import (
    Claim,
    canonical,
    dominant_year,
    entities_in,
    extract_claims,
    is_relative,
    names_in,
)
from hybrid.apps.prompt import Passage

_NUMBER = re.compile(r"(?<![\w.])[$€£]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[$€£]?\d+(?:\.\d+)?")
_UNIT = re.compile(
    r"[\s-]*(?:%|percent|per ?cent|years?|months?|weeks?|days?|hours?|minutes?|million|billion"
    r"|thousand|times|dollars?|euros?|pounds?|[kKmM]?[gG]\b|litres?|liters?|bar\b)",
    re.IGNORECASE,
)
_YEAR = re.compile(r"^(19|20)\d\d$")


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


def numbers_in(text: str) -> set[str]:
    """Canonical numbers in `text`, without citation markers. A single digit counts only with a
    unit after it ("5 years", "3%", "2 million"): "3 steps" is phrasing, not a figure."""
    text = _MARKER.sub(" ", text)
    found = set()
    for match in _NUMBER.finditer(text):
        number = canonical(match.group().lstrip("$€£"))
        if number is None:
            continue
        if number.isdigit() and len(number) == 1 and not _UNIT.match(text, match.end()):
            continue
        found.add(number)
    return found


@dataclass(frozen=True)
class Grounding:
    checked: int
    """How many figures and names the answer contains."""
    ungrounded: list[dict] = field(default_factory=list)
    """[{"text", "kind": "number" | "name", "reason"}] that no passage (nor the question or
    persona) supports. A number's `text` is its canonical digits ("412.6"), `figure` the figure
    as written ("$412.6 billion")."""
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


def _passage_scope(passage: Passage, known: frozenset[str]) -> frozenset[str]:
    """What a passage as a whole is about: the entities of its first line, and the entities
    the passages name that its file name holds ("k-classic.txt", "bb-200-pro.md")."""
    first_line = passage.text.strip().splitlines()[0] if passage.text.strip() else ""
    name = passage.file_name.lower()
    return frozenset({k for k in known if k in name} | entities_in(first_line))


def _file_years(passages: Sequence[Passage]) -> set[str]:
    """Years in the passages' file names ("annual-report-2025.pdf"): what the documents are
    about, even when a passage never writes its year."""
    return {y for p in passages for y in re.findall(r"(?<!\d)((?:19|20)\d\d)(?!\d)", p.file_name)}


def _evidence(passages: Sequence[Passage]) -> tuple[list[Claim], int | None]:
    # the year a figure without one is about: the documents' own (their file names), else the
    # year the passages mention most
    named = _file_years(passages)
    if len(named) == 1:
        year: int | None = int(next(iter(named)))
    else:
        year = dominant_year("\n".join(p.text for p in passages))
    known = frozenset().union(*(entities_in(p.text) for p in passages)) if passages else frozenset()
    claims: list[Claim] = []
    for passage in passages:
        scope = _passage_scope(passage, known)
        claims += extract_claims(passage.text, scope=scope, current_year=year)
    return claims, year


def _entities_compatible(claim: Claim, source: Claim) -> bool:
    return not claim.entities or not source.entities or bool(claim.entities & source.entities)


def _periods_compatible(claim: Claim, source: Claim) -> bool:
    """Whether two figures may be about the same period: years are compared with years, and
    periods relative to an unknown current year (`RELATIVE_NOW`) only with each other."""
    if not claim.periods:
        return True
    years = {p for p in claim.periods if not is_relative(p)}
    source_years = {p for p in source.periods if not is_relative(p)}
    if years and source_years:
        return bool(years & source_years)
    if years:
        return not years <= source.foreign_periods
    if source_years or not source.periods:
        return True
    return bool(claim.periods & source.periods)


def _overlap(words: frozenset[str], source: Claim) -> float:
    """How well `words` (what the answer says a figure measures) match a source figure's own
    clause (its sentence counts half)."""
    return len(words & source.clause) + 0.5 * len(words & source.sentence)


def _judge(claim: Claim, evidence: list[Claim], vocabulary: frozenset[str]) -> str | None:
    """None when `claim` is supported, else the reason it is not."""
    if claim.weak and not any(e.unit == "count" and e.noun == claim.noun for e in evidence):
        return None
    same = [e for e in evidence if claim.same_quantity(e)]
    # a figure written without its unit ("412.6 million") is judged in the unit it matched
    units = {e.unit for e in same} or {claim.unit}
    same_unit = [e for e in evidence if e.unit in units]
    if not same:
        near = [e for e in evidence if e.number == claim.number]
        if near:
            return f"the passages give {near[0].figure}, not {claim.figure}"
        return f"no passage gives {claim.figure}"
    if claim.unit == "year":
        return None  # a bare year is checked as the period of the figures around it
    fitting = [e for e in same if _entities_compatible(claim, e)]
    if not fitting:
        return f"the passages give {claim.figure} for another subject"
    fitting = [e for e in fitting if _periods_compatible(claim, e)]
    if not fitting:
        return f"the passages give {claim.figure} for another period"
    measured = claim.clause & vocabulary
    if not measured:
        return None

    def score(e: Claim) -> float:
        return _overlap(measured, e)

    best = max(score(e) for e in fitting)
    if best <= 0 and not any(measured & e.sentence for e in fitting):
        return f"the passages give {claim.figure} for something else"
    rivals = [
        e
        for e in same_unit
        if not claim.same_quantity(e)
        and (e.unit != "count" or e.noun == claim.noun)
        and _entities_compatible(claim, e)
        and _periods_compatible(claim, e)
    ]
    rival = max(rivals, key=score, default=None)
    if rival is not None and score(rival) > best + 0.5:
        return f"the passages give {rival.figure} for that"
    return None


def check_grounding(
    answer: str, passages: Sequence[Passage], *, question: str = "", persona: str = ""
) -> Grounding:
    """Check each figure of `answer` as a claim against the passages.

    A figure is supported when a passage gives the same quantity (value after scale: $412.6
    million = $412,600,000; the same unit: 2 months is not 2 weeks, 41.3% is not 41.3 points)
    about a compatible subject (the product or section it names), period (the year its clause
    or sentence names) and measure (the words around it), and no other passage figure fits
    those words clearly better. Figures the question or persona state are taken as given.
    Multi-word names and product codes must appear in a passage, the question or the persona.
    """
    evidence, year = _evidence(passages)
    given = numbers_in("\n".join([question, persona])) | _file_years(passages)
    vocabulary = frozenset().union(*(e.clause for e in evidence)) if evidence else frozenset()
    known = frozenset().union(*(e.entities for e in evidence)) if evidence else frozenset()
    everything = " ".join(" ".join([*(p.text for p in passages), question, persona]).split())
    everything = everything.lower()
    known |= {k for k in entities_in(answer) if k in everything}

    def answer_entities(sentence: str) -> frozenset[str]:
        lowered = sentence.lower()
        return frozenset(k for k in known if k in lowered)

    named = answer_entities(answer)
    claims = extract_claims(
        answer,
        scope=named if len(named) == 1 else (),
        current_year=year,
        find_entities=answer_entities,
    )
    nouns = {e.noun for e in evidence if e.unit == "count"}
    claims = [c for c in claims if not c.weak or (c.noun and c.noun in nouns)]
    ungrounded = []
    for claim in claims:
        if claim.number in given:
            continue
        reason = _judge(claim, evidence, vocabulary)
        if reason:
            ungrounded.append({"text": claim.number, "kind": "number", "reason": reason})
    seen = set()
    ungrounded = [u for u in ungrounded if not (u["text"] in seen or seen.add(u["text"]))]
    names = names_in(_MARKER.sub(" ", answer)) | {
        m for m in re.findall(r"\b[A-Z][A-Za-z]*-[A-Z0-9][A-Za-z0-9]*\b", answer)
    }
    ungrounded += [
        {"text": name, "kind": "name", "reason": "no passage names it"}
        for name in sorted(names)
        if name.lower() not in everything
    ]
    _, unknown = citations(answer, passages)
    return Grounding(len(claims) + len(names), ungrounded, unknown)
