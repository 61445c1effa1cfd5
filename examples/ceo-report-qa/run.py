"""The CEO report example, end to end (what `make demo` runs with --quick):

    .venv/bin/python examples/ceo-report-qa/run.py [--quick] [--model FOLDER]

Knowledge base from the 2025 annual report (PDF, page citations), a voice adapter trained on
Margaret Okafor's letters and replies, both served as the app `northwind-ceo`; the same
questions go to `northwind-base` (same retrieval, no adapter) for comparison.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from examples.runner import QUICK_STEPS, Adapter, Demo, Evaluation, Question, run  # noqa: E402

APPS = ("northwind-ceo", "northwind-base")

DEMO = Demo(
    name="ceo-report-qa",
    folder=HERE,
    knowledge_bases={"northwind-report": [Path("docs")]},
    # Registered at 0.75 of its trained strength (hybrid adapter scale; bench/adapter_strength.py):
    # on the 68 answerable questions 27 right against the base's 23, voice +0.04 (+0.02..+0.06);
    # at full strength 22 vs 23 with voice +0.06, at half 28 vs 23 with no voice left.
    adapters=[Adapter("ceo-voice", Path("train.yaml"), strength=0.75)],
    apps=[Path("apps/northwind-ceo.yaml"), Path("apps/northwind-base.yaml")],
    questions=[
        Question("What was Northwind's total revenue in 2025?", APPS),
        Question("What gross margin did Northwind achieve in 2025?", APPS),
        Question("How much cash did Northwind have at the end of 2025?", APPS),
        Question("What is the best recipe for banana bread?", APPS),
    ],
    evaluations=(
        Evaluation(
            questions=Path("eval/questions.jsonl"),
            apps=APPS,
            style=Path("train.yaml"),
            style_baseline=Path("eval/base_replies.jsonl"),
        ),
    ),
    # bench/adapter_recipes/grounded60-lr3e-4.yaml: the Q&A replies and train.yaml's 60
    # grounded-voice examples, 40 steps at 448 tokens (about 3 minutes on 2 cores)
    quick_train={
        **QUICK_STEPS,
        "data": f"[{HERE / 'style' / 'qa.jsonl'}]",
        "max_length": 448,
        "learning_rate": 3e-4,
    },
)

if __name__ == "__main__":
    run(DEMO)
