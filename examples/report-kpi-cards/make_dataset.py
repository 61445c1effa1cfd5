"""Build the KPI-card training set and the held-out gold cards from the report's own figures.

    .venv/bin/python examples/report-kpi-cards/make_dataset.py           # write both files
    .venv/bin/python examples/report-kpi-cards/make_dataset.py --check   # exit 1 if stale/wrong

Every card comes from one fact of `facts.yaml`, checked against the text of the Northwind
report PDF (examples/ceo-report-qa/docs, read with pypdf as the knowledge base reads it): the
evidence is on exactly one page (that page is `source_page`), the figure is in the evidence,
`value` and `unit` are what the figure says, every number of `change` is in the evidence's
sentence, and the commentary is that sentence from the evidence on. No figure is invented.

- `data/cards.jsonl`: Alpaca records (`system`, `instruction`, `input`, `output`). `system` is
  the kpi-cards app's instructions, `instruction` a question templated from the metric and
  period, `input` numbered passages laid out as the app shows them (the fact's passage among
  passages of other pages, in a random position), `output` the card as compact JSON.
- `eval/questions.jsonl`: the held-out facts (metrics never trained on), each with a question
  written by hand, the labelled-set fields (`source`, `page`, `evidence`, `answers`) and the
  gold `card`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

PDF = HERE.parent / "ceo-report-qa" / "docs" / "northwind-annual-report-2025.pdf"
FACTS = HERE / "facts.yaml"
SCHEMA = HERE / "kpi_card.schema.json"
APP = HERE / "apps" / "kpi-cards.yaml"
TRAIN = HERE / "data" / "cards.jsonl"
HELDOUT = HERE / "eval" / "questions.jsonl"
FACT_KEYS = {"metric", "figure", "unit", "period", "change", "evidence", "split", "question"}
REQUIRED = FACT_KEYS - {"question"}
SEED = 17
PER_FACT = 5
"""Training examples per training fact: each with another question template and passages."""
PASSAGE_CHARS = 420
"""About the length of a passage (whole sentences), ~100 tokens: a short retrieved chunk."""

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$])")
NUMBER = re.compile(r"[0-9][0-9,]*(?:\.[0-9]+)?")
PROPER = {
    "Fulfillment", "Industrial", "Services", "Compass", "NorthCare", "Second", "North",
    "United", "Canada", "Europe", "Germany", "Netherlands", "Asia-Pacific", "Australia",
    "Singapore", "Tern", "Tide", "Heron", "Petrel", "Scope", "Brno",
}  # fmt: skip
PERIOD_WORDS = {
    "FY2025": ("in 2025", "2025"),
    "FY2024": ("in 2024", "2024"),
    "Q4 2025": ("in the fourth quarter of 2025", "Q4 2025"),
    "2025-12-31": ("at the end of 2025", "year-end 2025"),
}
TEMPLATES = (
    "What was {m} {when}?",
    "KPI card for {m}, {short}.",
    "Give me {m} {when} as a card.",
    "{M}, {short}?",
    "How did {m} come out {when}?",
    "I need the {m} figure {when}.",
)


def page_texts(pdf: Path = PDF) -> dict[int, str]:
    """Each page's text as pypdf extracts it, runs of whitespace collapsed."""
    from pypdf import PdfReader

    return {
        i: " ".join((page.extract_text() or "").split())
        for i, page in enumerate(PdfReader(pdf).pages, start=1)
    }


def figure_value(figure: str) -> tuple[float | int, str | None]:
    """(value, the unit the figure's own text implies) of "$412.6 million", "41.3%", "1,864"."""
    digits = NUMBER.search(figure)
    if digits is None:
        raise ValueError(f"no number in figure {figure!r}")
    text = digits.group(0).replace(",", "")
    value: float | int = float(text) if "." in text else int(text)
    if figure.startswith("$"):
        return value, "USD million" if figure.endswith(" million") else "USD"
    return value, "%" if figure.endswith("%") else None


def sentence_end(text: str, start: int) -> int:
    match = SENTENCE_END.search(text, start)
    return match.start() if match else len(text)


def sentence_start(text: str, at: int) -> int:
    starts = [m.end() for m in SENTENCE_END.finditer(text, 0, at + 1) if m.end() <= at]
    return starts[-1] if starts else 0


def build_card(fact: dict, pages: dict[int, str]) -> tuple[dict, int, str]:
    """(card, page, evidence sentence) of one fact, or ValueError naming what does not hold."""
    evidence = fact["evidence"]
    found = [page for page, text in pages.items() if evidence in text]
    if len(found) != 1:
        raise ValueError(f"evidence {evidence!r} is on pages {found}, not on exactly one")
    page = found[0]
    text = pages[page]
    if fact["figure"] not in evidence:
        raise ValueError(f"figure {fact['figure']!r} is not in its evidence {evidence!r}")
    value, implied = figure_value(fact["figure"])
    if implied is not None and implied != fact["unit"]:
        raise ValueError(f"figure {fact['figure']!r} is in {implied}, not {fact['unit']!r}")
    if implied is None and fact["unit"] in ("USD million", "USD", "%"):
        raise ValueError(f"figure {fact['figure']!r} does not say {fact['unit']!r}")
    at = text.index(evidence)
    sentence = text[sentence_start(text, at) : sentence_end(text, at)]
    for number in NUMBER.findall(fact["change"] or ""):
        if number not in sentence and not number.startswith("20"):  # years: FY2024
            raise ValueError(f"change {fact['change']!r}: {number} is not in {sentence!r}")
    commentary = text[at : sentence_end(text, at)]
    commentary = commentary[0].upper() + commentary[1:]
    card = {
        "metric": fact["metric"],
        "value": value,
        "unit": fact["unit"],
        "period": fact["period"],
        "change": fact["change"],
        "source_page": page,
        "commentary": commentary,
    }
    return card, page, sentence


def passage_around(text: str, at: int, rng: random.Random) -> str:
    """Whole sentences of `text` holding position `at`, starting 0-2 sentences before it."""
    bounds = [0, *(m.end() for m in SENTENCE_END.finditer(text))]
    first = max(i for i, b in enumerate(bounds) if b <= at)
    first = max(1, first - rng.randint(0, 2)) if first > 0 else 0  # skip the running head
    start = bounds[first]
    end = sentence_end(text, max(at, start))
    while end < len(text) and end - start < PASSAGE_CHARS:
        end = sentence_end(text, end + 1)
    return text[start:end].strip()


def without_running_head(text: str) -> str:
    return text.removeprefix("Northwind Robotics - 2025 Annual Report").strip()


def lower_first(metric: str) -> str:
    first = metric.split()[0]
    return metric if first in PROPER else metric[0].lower() + metric[1:]


def system_text() -> str:
    """The kpi-cards app's system message without its passages (what `system` trains)."""
    from hybrid.apps.spec import load_app_spec

    spec = load_app_spec(APP)
    head = spec.prompt_template.split("Passages:")[0]
    return head.format(persona=spec.persona).strip()


def training_records(facts: list[dict], pages: dict[int, str]) -> list[dict]:
    from hybrid.apps.prompt import Passage, format_context

    rng = random.Random(SEED)
    system = system_text()
    texts = {p: without_running_head(t) for p, t in pages.items()}
    content_pages = [p for p, t in texts.items() if len(t) > 400 and p > 2]
    records = []
    for fact in facts:
        card, page, _ = build_card(fact, pages)
        when, short = PERIOD_WORDS[fact["period"]]
        metric = lower_first(fact["metric"])
        templates = rng.sample(TEMPLATES, PER_FACT)
        for template in templates:
            question = template.format(m=metric, M=fact["metric"], when=when, short=short)
            text = texts[page]
            own = passage_around(text, text.index(fact["evidence"]), rng)
            others = rng.sample([p for p in content_pages if p != page], rng.randint(1, 2))
            chosen = [(page, own)]
            for other in others:
                body = texts[other]
                chosen.append((other, passage_around(body, rng.randrange(len(body)), rng)))
            rng.shuffle(chosen)
            passages = [
                Passage(n, body, PDF.name, str(PDF.name), p, 0, len(body), 1.0)
                for n, (p, body) in enumerate(chosen, start=1)
            ]
            records.append(
                {
                    "system": system,
                    "instruction": question,
                    "input": format_context(passages),
                    "output": json.dumps(card, ensure_ascii=False),
                }
            )
    return records


def heldout_records(facts: list[dict], pages: dict[int, str]) -> list[dict]:
    rows = []
    for fact in facts:
        card, page, _sentence = build_card(fact, pages)
        rows.append(
            {
                "question": fact["question"],
                "source": PDF.name,
                "page": page,
                "evidence": fact["evidence"],
                "answers": [fact["figure"]],
                "card": card,
            }
        )
    return rows


def build() -> dict[Path, str]:
    """The two files' contents; ValueError listing every fact that fails its checks."""
    from hybrid.apps.answer_schema import AnswerSchema

    facts = yaml.safe_load(FACTS.read_text(encoding="utf-8"))["facts"]
    pages = page_texts()
    problems = []
    for i, fact in enumerate(facts, start=1):
        keys = set(fact)
        if (
            keys - FACT_KEYS
            or not keys >= REQUIRED
            or ("question" in keys) != (fact.get("split") == "heldout")
        ):
            problems.append(
                f"facts.yaml fact {i}: keys {sorted(keys)}; expected {sorted(REQUIRED)} and "
                "`question` on held-out facts only (a comma in a flow mapping splits a value: "
                "quote it)"
            )
            continue
        try:
            build_card(fact, pages)
        except ValueError as exc:
            problems.append(f"facts.yaml fact {i} ({fact['metric']}, {fact['period']}): {exc}")
    if problems:
        raise ValueError("\n".join(problems))
    train = [f for f in facts if f["split"] == "train"]
    heldout = [f for f in facts if f["split"] == "heldout"]
    shared = {f["metric"] for f in train} & {f["metric"] for f in heldout}
    if shared:
        problems.append(f"metrics both trained and held out: {sorted(shared)}")
    if problems:
        raise ValueError("\n".join(problems))
    schema = AnswerSchema(json.loads(SCHEMA.read_text(encoding="utf-8")))
    records = training_records(train, pages)
    gold = heldout_records(heldout, pages)
    for card in [json.loads(r["output"]) for r in records] + [g["card"] for g in gold]:
        check = schema.check(json.dumps(card))
        if not check.valid:
            raise ValueError(f"card {card['metric']!r} breaks the schema: {check.errors}")

    def lines(rows: list[dict]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    return {TRAIN: lines(records), HELDOUT: lines(gold)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the files, write nothing")
    args = parser.parse_args(argv)
    try:
        files = build()
    except ValueError as exc:
        raise SystemExit(f"the facts do not check out:\n{exc}") from None
    for path, text in files.items():
        rows = text.count("\n")
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                raise SystemExit(f"{path} is not what make_dataset.py builds: run it again")
            print(f"{path.relative_to(HERE)}: {rows} records, up to date")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE)}: {rows} records")


if __name__ == "__main__":
    main()
