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
    # Trained on grounded-voice and abstention examples alone (train.yaml: train_style_data
    # false), served at full strength; what each change did is in the README ("Answer
    # quality"): as right as the base app on the 68 answerable questions, in her voice.
    adapters=[Adapter("ceo-voice", Path("train.yaml"))],
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
    # train.yaml's examples, 80 steps at 512 tokens (381 s on a quiet 2-core machine; make demo
    # took 778 s end to end)
    quick_train={
        **QUICK_STEPS,
        "max_steps": 80,
        "data": f"[{HERE / 'style' / 'qa.jsonl'}]",
        "max_length": 512,
        "learning_rate": 3e-4,
    },
)

if __name__ == "__main__":
    run(DEMO)
