"""Figures bound to the sources at decode time.

An app with `generation.bind_figures: true` constrains each answer so that every number it writes
is one that appears in its passages or in the question, written as it appears there
("$412.6 million" may be written, "$412 million" or "$1.1 billion" may not, unless the passages
hold those figures). Words, units and punctuation stay free: the constraint binds digits only;
whether a figure is used for the right quantity is the grounding check's job.

The constraint is a grammar (xgrammar's EBNF dialect, which vLLM's default structured-output
backend compiles) built per request and sent as vLLM's `structured_outputs: {"grammar": ...}`;
the in-process generator applies the same grammar with xgrammar's transformers logits processor.

What counts as a number: a maximal run of ASCII digits with inner `.` or `,` separators between
digit groups (`412.6`, `1,250,000`, `2025`). "1.1" is one figure, not "1" and "1"; in "Q4" the
number is "4"; "2025-03-31" holds three. A figure may be followed by `.` or `,` as punctuation
("in 2025."), never by another digit group. Citation markers `[1]`..`[n]` for the passages
given are always allowed. Other digit systems (e.g. Arabic-Indic) are not constrained.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

FIGURE = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
"""A number as the grammar sees it (the same definition on both sides)."""

MAX_FIGURES = 2000
"""More distinct figures than this (a table-heavy context) and the binding is skipped: the
grammar would bind little and cost compile time."""


def figures_in(texts: Iterable[str]) -> list[str]:
    """The distinct figures of `texts`, in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in FIGURE.finditer(text or ""):
            seen.setdefault(match.group(0), None)
    return list(seen)


def figure_grammar(figures: Sequence[str], citations: int) -> str:
    """The EBNF grammar of free text whose every number is one of `figures` and whose every
    bracketed number is a citation `[1]`..`[citations]`.

    Args:
        figures: the allowed figures, each matching `FIGURE` exactly (as `figures_in` gives).
        citations: how many numbered passages the prompt shows (0: no citation markers).

    Raises:
        ValueError: a figure that is not a number as `FIGURE` defines it.
    """
    bad = [f for f in figures if not FIGURE.fullmatch(f)]
    if bad:
        raise ValueError(f"not figures: {bad[:5]}; expected digits with . or , between groups")
    allowed = sorted(set(figures), key=lambda f: (-len(f), f))
    cite = " | ".join(f'"[{n}]"' for n in range(1, citations + 1))
    # One rule over characters only (no rule references): xgrammar compiles it to a single
    # automaton and precomputes the token mask of every state, so decoding pays ~nothing per
    # token. Split into rules, the states after a figure cost ~100 ms per mask on these CPUs.
    piece = f'([^0-9\\[] | "[" [^0-9\\[]{f" | {cite}" if cite else ""})'
    if not allowed:
        return f"root ::= {piece}*\n"
    figure = "(" + " | ".join(f'"{f}"' for f in allowed) + ")"
    # After a figure: no digit, and no separator followed by a digit ("2025" is never "20" then
    # "25", nor "41.3" "41", "." and "3"); a separator then a non-digit is punctuation.
    after = [
        f"[^0-9.,\\[] {piece}*",
        f"[.,] {piece} {piece}*",
        f'"[" [^0-9\\[] {piece}*',
        *([f"({cite}) {piece}*"] if cite else []),
    ]
    return f"root ::= {piece}* ({figure} ({' | '.join(after)}))* ({figure} [.,]?)?\n"


def binding_for(texts: Iterable[str], citations: int) -> dict | None:
    """vLLM's `structured_outputs` value binding an answer's figures to those in `texts` (the
    passages and the question), or None when there are too many figures to bind usefully."""
    figures = figures_in(texts)
    if len(figures) > MAX_FIGURES:
        return None
    return {"grammar": figure_grammar(figures, citations)}


def unbound_figures(answer: str, allowed: Iterable[str]) -> list[str]:
    """The figures of `answer` that are not in `allowed` (what the grammar refuses)."""
    permitted = set(allowed)
    return [f for f in figures_in([_without_citations(answer)]) if f not in permitted]


def _without_citations(text: str) -> str:
    return re.sub(r"\[[0-9]+\]", " ", text)
