"""The KPI-card example, end to end: a format adapter, not a voice.

    .venv/bin/python examples/report-kpi-cards/run.py [--quick] [--model FOLDER]

The ceo-report-qa example's report (its PDF, referenced, not copied) as the knowledge base; a
LoRA trained on 300 checked Alpaca records (make_dataset.py) to answer with one JSON KPI card;
both served as the app `kpi-cards`, beside `kpi-base` (same retrieval, prompt and schema check,
no adapter). At the end the held-out questions (eval/questions.jsonl, metrics never trained
on) go to both apps with and without the engine's structured output (`response_format` with
the card's JSON schema), scored against gold cards (examples/kpi_cards.py; the bench is
bench/kpi_cards_bench.py).
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from examples.runner import QUICK_STEPS, Adapter, Demo, Question, run  # noqa: E402

APPS = ("kpi-cards", "kpi-base")
SCHEMA = HERE / "kpi_card.schema.json"
HELDOUT = HERE / "eval" / "questions.jsonl"
ANSWER_TOKENS = 200  # the apps' generation.max_tokens: room for a card and its commentary


def measure_cards(url: str, work: Path, max_tokens: int | None = None) -> None:
    """Schema-valid rate and field correctness of both apps, with and without json_schema
    (answers of at most `max_tokens`, default ANSWER_TOKENS)."""
    from examples.kpi_cards import measure, table
    from examples.runner import step

    step("held-out questions: each app with and without the engine's json_schema output")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    result = measure(url, APPS, HELDOUT, schema, max_tokens=max_tokens or ANSWER_TOKENS)
    (work / "kpi_cards.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print("\n" + table(result["cells"]))
    print(f"answers in {work / 'kpi_cards.json'}")


DEMO = Demo(
    name="report-kpi-cards",
    folder=HERE,
    knowledge_bases={"northwind-report": [Path("../ceo-report-qa/docs")]},
    adapters=[Adapter("kpi-card-format", Path("train.yaml"))],
    apps=[Path("apps/kpi-cards.yaml"), Path("apps/kpi-base.yaml")],
    questions=[
        Question("How much cash did Northwind hold at the end of 2025?", APPS),
        Question("What gross margin did Northwind report for 2025?", APPS),
    ],
    checks=(measure_cards,),
    answer_tokens=ANSWER_TOKENS,
    # 40 steps of 2 cards (~600 tokens each): a few minutes on 2 cores; the shape is learnt
    # long before the 300 records are seen once (bench/kpi_cards_bench.py measures this run).
    # max_length 2048 only matters for a tokenizer less frugal than SmolLM2's (<= 818 here).
    quick_train={**QUICK_STEPS, "max_length": 2048, "learning_rate": 5e-4},
)

if __name__ == "__main__":
    run(DEMO)
