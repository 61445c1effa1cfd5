"""A planted-error set for the grounding check, generated from documents, and its measurement.

From each sentence of a corpus that states a figure, a seeded generator writes one correct
answer (the sentence restated: a wrapper, a clause cut, `$412.6 million` as `$412,600,000` or
`$412.6m`, `%` as `percent`, a citation marker) and one wrong answer with exactly one planted
error: another value, a figure of the passage put in place of this one, another scale
(million/billion), another unit (months/weeks, % / percentage points, ml/liters, $/£), another
year, or another product or segment. Each answer is checked against the sentence's passage and a
second passage (a random one, or for an entity swap the other entity's), as top-2 retrieval would
give it. Recall: planted errors flagged; false flags: correct answers flagged.

The corpora are the examples' documents; `report` (the CEO example's PDF) is the one the checker
was tuned on, `brewbird` and `kettleandco` (the brand example's knowledge bases) are held out.

Why one module: the planted-error generator and its measurement are one experiment
(bench/grounding_bench.py); each planting rule is read beside the cases it produces.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hybrid.apps.grounding import check_grounding, names_in, numbers_in
from hybrid.apps.prompt import Passage

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Corpus:
    name: str
    files: tuple[Path, ...]
    entity_groups: tuple[tuple[str, ...], ...]
    """Interchangeable subjects: an answer that puts one's figure on another is wrong."""
    held_out: bool


def corpora() -> list[Corpus]:
    brands = EXAMPLES / "branded-chatbot" / "brands"
    return [
        Corpus(
            "report",
            tuple(sorted((EXAMPLES / "ceo-report-qa" / "docs").glob("*.pdf"))),
            (
                ("Fulfillment Systems", "Industrial Arms", "Services and Software"),
                ("Tern AMR-600", "Tern AMR-300"),
                ("Heron CA-7", "Heron CA-12"),
            ),
            held_out=False,
        ),
        Corpus(
            "brewbird",
            tuple(sorted((brands / "brewbird" / "kb").iterdir())),
            (("BB-100", "BB-200 Pro"),),
            held_out=True,
        ),
        Corpus(
            "kettleandco",
            tuple(sorted((brands / "kettleandco" / "kb").iterdir())),
            (("K-Classic", "K-Barista"),),
            held_out=True,
        ),
    ]


def load_passages(corpus: Corpus, words_per_chunk: int = 150) -> list[Passage]:
    """The corpus cut as a knowledge base cuts it (retrieval's loaders and sentence splitter,
    with words standing in for the embedder's tokens)."""
    from retrieval.chunking import chunk_pages, make_splitter
    from retrieval.config import ChunkingConfig
    from retrieval.loaders import load_document

    splitter = make_splitter(
        ChunkingConfig(chunk_size=words_per_chunk, chunk_overlap=20), lambda t: t.split()
    )
    passages = []
    for path in corpus.files:
        for chunk in chunk_pages(load_document(path), splitter):
            passages.append(
                Passage(
                    len(passages) + 1,
                    chunk.text.strip(),
                    path.name,
                    str(path),
                    chunk.page,
                    chunk.start_char,
                    chunk.end_char,
                    0.8,
                )
            )
    return passages


_FIGURE = re.compile(
    r"(?<![\w.:-])(?P<cur>[$£€])?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d:])"
    r"(?P<scale>\s(?:million|billion|thousand))?"
    r"(?P<unit>%|\s(?:percentage points|percent|[A-Za-z]+))?"
)
_YEAR = re.compile(r"^(19|20)\d\d$")
_UNIT_SWAPS = {
    " months": " weeks",
    " month": " week",
    " weeks": " months",
    " week": " month",
    " days": " weeks",
    " day": " week",
    " minutes": " hours",
    " minute": " hour",
    " hours": " minutes",
    " hour": " minute",
    " seconds": " minutes",
    " second": " minute",
    " years": " months",
    " year": " month",
    "%": " percentage points",
    " percentage points": "%",
    " percent": " percentage points",
    " ml": " liters",
    " liters": " ml",
    " liter": " ml",
    " litres": " ml",
    " litre": " ml",
    " kg": " g",
    " kilograms": " grams",
    " cm": " mm",
    " mm": " cm",
}
_WRAPPERS = (
    "{s}",
    "According to the passages, {s}",
    "Good question! {s}",
    "{s} Let me know if there is anything else.",
    "Here is what I found: {s}",
    "In short, {s}",
)
KINDS = ("value", "swap", "scale", "unit", "period", "entity")


@dataclass(frozen=True)
class Case:
    corpus: str
    kind: str
    """"correct" or the planted error's kind (one of KINDS)."""
    answer: str
    passages: tuple[Passage, ...]
    source: str
    """The sentence the answer restates."""


def _sentences(text: str) -> list[str]:
    """Sentences that state a figure; headings, page headers and table rows left out."""
    lines = []
    for line in text.splitlines():
        bare = line.strip()
        heading = (
            bare
            and len(bare) < 60
            and not re.search(r"[.!?:;,]$", bare)
            and not re.match(r"([-*•]|\d+[.)]|[a-z]\))\s", bare)
            and not re.search(r"\d", bare)
        )
        if re.search(r"Page \d+ of \d+|Annual Report$", bare) or heading or "|" in bare:
            lines.append("")  # a break, as a blank line
        else:
            lines.append(line)
    out = []
    text = "\n".join(lines)
    items = r"\n(?=\s*(?:[-*•#]|\d+[.)]|[a-z]\))\s)|\n(?=[A-Z][\w ]{1,30}: )"
    for block in re.split(r"\n\s*\n|" + items, text):
        block = re.sub(r"^\s*(?:[-*•#]+|\d+[.)]|[a-z]\))\s+", "", block.strip())
        block = re.sub(r"\s+", " ", block.replace("**", ""))
        if block and not block.endswith((".", "!", "?", ":")):
            block += "."  # a list item: "Weight: 4.1 kg"
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", block):
            if not 20 <= len(sentence) <= 320 or not sentence.endswith((".", "!", "?")):
                continue
            if _figures(sentence):
                out.append(sentence.strip())
    return out


def _figures(sentence: str) -> list[re.Match]:
    """The figures of a sentence worth changing: no years, times, phone numbers or versions."""
    return [
        m
        for m in _FIGURE.finditer(sentence)
        if not _YEAR.match(m.group("num"))
        and not re.match(r"\s?(?:[ap]\.?m\b|\d)|-\d|\.$", sentence[m.end("num") :])
        and not re.search(r"(?:\b[A-Z][A-Za-z]*|\d)\s$", sentence[: m.start()][-20:])
    ]


def _replace(sentence: str, match: re.Match, group: str, new: str) -> str:
    start, end = match.span(group)
    return sentence[:start] + new + sentence[end:]


def _other_value(number: str, rng: random.Random) -> str:
    decimals = len(number.split(".")[1]) if "." in number else 0
    value = float(number.replace(",", ""))
    for _ in range(20):
        factor = rng.choice((0.5, 0.6, 0.75, 1.3, 1.5, 2, 3))
        new = round(value * factor, decimals) if value else rng.randint(2, 9)
        if abs(new - value) >= max(1.0, value * 0.1):
            break
    else:
        new = value + 7
    text = f"{new:,.{decimals}f}" if "," in number else f"{new:.{decimals}f}"
    return text


def _correct(sentence: str, rng: random.Random) -> str:
    out = sentence
    figures = _figures(out)
    choice = rng.random()
    if choice < 0.25 and figures:  # the clause holding the first figure only
        cut = out.find(", ", figures[0].end())
        if cut > 0:
            out = out[:cut].rstrip(" ,;:") + "."
    elif choice < 0.5:
        for m in reversed(_figures(out)):
            if m.group("cur") and m.group("scale") and " million" in m.group("scale"):
                value = float(m.group("num").replace(",", "")) * 1_000_000
                as_text = rng.choice((f"{value:,.0f}", m.group("num") + "m"))
                start, end = m.span("num")[0], m.span("scale")[1]
                out = out[:start] + as_text + out[end:]
                break
            if m.group("unit") == "%":
                out = _replace(out, m, "unit", " percent")
                break
    if rng.random() < 0.3:
        out = re.sub(r"\.$", " [1].", out)
    wrapper = rng.choice(_WRAPPERS)
    if wrapper.startswith("{s}") or not out:
        return wrapper.format(s=out)
    return wrapper.format(s=out[0].lower() + out[1:] if not out[:2].isupper() else out)


def _plant(  # noqa: C901 - one branch per kind of planted error, each a few lines
    kind: str,
    sentence: str,
    passage: Passage,
    corpus: Corpus,
    homes: dict[str, str],
    rng: random.Random,
) -> tuple[str, str | None] | None:
    """(wrong answer, the other entity when the error is an entity swap), or None when `kind`
    does not apply to this sentence."""
    figures = _figures(sentence)
    if kind == "value":
        m = rng.choice(figures)
        return _replace(sentence, m, "num", _other_value(m.group("num"), rng)), None
    if kind == "swap":  # another figure of the same passage with the same unit
        for m in rng.sample(figures, len(figures)):
            unit = _unit_key(m)
            pool = [
                f.group("num")
                for f in _FIGURE.finditer(passage.text)
                if _unit_key(f) == unit
                and f.group("num") != m.group("num")
                and not _YEAR.match(f.group("num"))
                and not _same_number(f.group("num"), m.group("num"))
            ]
            if pool:
                return _replace(sentence, m, "num", rng.choice(sorted(set(pool)))), None
        return None
    if kind == "scale":
        for m in figures:
            if m.group("scale"):
                new = {" million": " billion", " billion": " million", " thousand": " million"}
                return _replace(sentence, m, "scale", new[m.group("scale")]), None
        return None
    if kind == "unit":
        for m in rng.sample(figures, len(figures)):
            unit = m.group("unit")
            if unit in _UNIT_SWAPS:
                return _replace(sentence, m, "unit", _UNIT_SWAPS[unit]), None
            if m.group("cur") in ("$", "£"):
                return _replace(sentence, m, "cur", {"$": "£", "£": "$"}[m.group("cur")]), None
        return None
    if kind == "period":
        years = [m for m in _FIGURE.finditer(sentence) if _YEAR.match(m.group("num"))]
        if not years:
            return None
        m = rng.choice(years)
        shifted = str(int(m.group("num")) + rng.choice((-1, 1)))
        return _replace(sentence, m, "num", shifted), None
    if kind == "entity":
        for group in corpus.entity_groups:
            for name in group:
                about = _heading(passage, sentence).lower().replace(" ", "-")
                if name not in sentence and name.lower().replace(" ", "-") not in about:
                    continue
                others = [
                    o
                    for o in group
                    if o != name
                    and o not in sentence
                    and not any(f.group("num") in homes.get(o, "") for f in figures)
                ]
                if not others:
                    continue
                other = rng.choice(others)
                if name in sentence:
                    return sentence.replace(name, other), other
                return f"For the {other}: {sentence[0].lower()}{sentence[1:]}", other
        return None
    raise ValueError(f"unknown kind {kind!r}")


def _unit_key(m: re.Match) -> tuple[str, str, str]:
    unit = (m.group("unit") or "").strip()
    known = unit in ("%", "percent", "percentage points") or f" {unit}" in _UNIT_SWAPS
    return (m.group("cur") or "", m.group("scale") or "", unit if known else "")


def _same_number(a: str, b: str) -> bool:
    return float(a.replace(",", "")) == float(b.replace(",", ""))


def _heading(passage: Passage, sentence: str) -> str:
    """The nearest heading-like line above `sentence` in its passage (or its file name)."""
    before = passage.text[: max(passage.text.find(sentence[:40]), 0)]
    lines = [
        ln.strip("# ").strip()
        for ln in before.splitlines()
        if ln.strip() and len(ln.strip()) < 60 and not ln.strip().endswith(".")
    ]
    return (lines[-1] if lines else "") + " " + passage.file_name


def _homes(corpus: Corpus, passages: Sequence[Passage]) -> dict[str, str]:
    """Per entity, the text near its mentions: figures there may truly be that entity's."""
    homes: dict[str, list[str]] = defaultdict(list)
    for group in corpus.entity_groups:
        for name in group:
            key = name.lower().replace(" ", "-")
            for p in passages:
                if key.split("-")[-1] in p.file_name.lower() or name in p.text[:80]:
                    homes[name].append(p.text)
                for hit in re.finditer(re.escape(name), p.text):
                    homes[name].append(p.text[hit.start() : hit.end() + 60])
    return {k: "\n".join(v) for k, v in homes.items()}


def generate(corpus: Corpus, seed: int = 0, passages: list[Passage] | None = None) -> list[Case]:
    """One correct and one planted-error answer per figure sentence of the corpus."""
    rng = random.Random(f"{corpus.name}:{seed}")
    passages = passages if passages is not None else load_passages(corpus)
    homes = _homes(corpus, passages)
    cases: list[Case] = []
    seen: set[str] = set()
    for passage in passages:
        for sentence in _sentences(passage.text):
            if sentence in seen:
                continue
            seen.add(sentence)
            others = [p for p in passages if p is not passage]
            distractor = rng.choice(others) if others else None
            given = tuple(p for p in (passage, distractor) if p is not None)
            for _ in range(2):
                answer = _correct(sentence, rng)
                cases.append(Case(corpus.name, "correct", answer, given, sentence))
            planted = 0
            kinds = rng.sample(KINDS, len(KINDS))
            if rng.random() < 0.7:  # entity swaps apply to few sentences: try them first
                kinds.remove("entity")
                kinds.insert(0, "entity")
            for kind in kinds:
                made = _plant(kind, sentence, passage, corpus, homes, rng)
                if made is None or made[0] == sentence:
                    continue
                wrong, other = made
                given_wrong = given
                if other is not None:  # retrieval for the other entity brings its passage
                    theirs = [p for p in others if other in p.text or other in p.file_name]
                    if theirs:
                        given_wrong = (passage, rng.choice(theirs))
                wrapper = rng.choice(_WRAPPERS)
                cases.append(
                    Case(corpus.name, kind, wrapper.format(s=wrong), given_wrong, sentence)
                )
                planted += 1
                if planted == 2:
                    break
    return cases


def renumber(passages: Sequence[Passage]) -> list[Passage]:
    from dataclasses import replace

    return [replace(p, number=i) for i, p in enumerate(passages, start=1)]


def digits_only(answer: str, passages: Sequence[Passage]) -> bool:
    """The old check (before claims): flagged when a number or name of the answer appears in no
    passage. The baseline."""
    evidence = "\n".join(p.text for p in passages)
    if numbers_in(answer) - numbers_in(evidence):
        return True
    return any(n.lower() not in evidence.lower() for n in names_in(answer))


def claims_check(answer: str, passages: Sequence[Passage]) -> bool:
    return bool(check_grounding(answer, renumber(passages)).ungrounded)


def measure(cases: Sequence[Case], flags: Callable[[str, Sequence[Passage]], bool]) -> dict:
    """Recall on planted errors (overall and per kind) and the false-flag rate on correct ones."""
    correct = [c for c in cases if c.kind == "correct"]
    wrong = [c for c in cases if c.kind != "correct"]
    flagged_correct = [c for c in correct if flags(c.answer, c.passages)]
    caught = [c for c in wrong if flags(c.answer, c.passages)]
    per_kind = {}
    for kind in KINDS:
        of_kind = [c for c in wrong if c.kind == kind]
        if of_kind:
            hit = sum(1 for c in caught if c.kind == kind)
            per_kind[kind] = {"n": len(of_kind), "recall": round(hit / len(of_kind), 3)}
    return {
        "correct": len(correct),
        "planted": len(wrong),
        "recall": round(len(caught) / len(wrong), 3) if wrong else None,
        "false_flags": round(len(flagged_correct) / len(correct), 3) if correct else None,
        "per_kind": per_kind,
        "missed": [c.answer for c in wrong if c not in caught],
        "false_flagged": [c.answer for c in flagged_correct],
    }
