"""Two brands on one base model, end to end:

    .venv/bin/python examples/branded-chatbot/run.py [--quick] [--model FOLDER]

BrewBird (playful, US) and Kettle & Co (formal, UK) each get a knowledge base and a voice
adapter; one vLLM engine serves both adapters at once (multi-LoRA) behind two apps. The same
question goes to both apps: different facts (their own knowledge base) in different voices.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from examples.runner import QUICK_STEPS, Adapter, Demo, Evaluation, Question, run  # noqa: E402

BOTH = ("brewbird-support", "kettleandco-support")

DEMO = Demo(
    name="branded-chatbot",
    folder=HERE,
    knowledge_bases={
        "brewbird": [Path("brands/brewbird/kb")],
        "kettleandco": [Path("brands/kettleandco/kb")],
    },
    adapters=[
        Adapter("brewbird-voice", Path("brands/brewbird/train.yaml")),
        Adapter("kettleandco-voice", Path("brands/kettleandco/train.yaml")),
    ],
    apps=[
        Path("apps/brewbird.yaml"),
        Path("apps/kettleandco.yaml"),
        Path("apps/brewbird-base.yaml"),
        Path("apps/kettleandco-base.yaml"),
    ],
    questions=[
        Question("How long is the warranty on your machines?", BOTH),
        Question("How often should I descale my machine?", BOTH),
        Question("Do you offer free shipping?", BOTH),
        Question("Can you recommend a good hiking trail in Patagonia?", BOTH),
    ],
    # Each brand's app against the same retrieval without its adapter, on that brand's questions.
    evaluations=tuple(
        Evaluation(
            questions=Path("eval/questions.jsonl"),
            apps=(f"{brand}-support", f"{brand}-base"),
            style=Path(f"brands/{brand}/train.yaml"),
            style_baseline=Path(f"brands/{brand}/base_replies.jsonl"),
            only={"brand": brand},
        )
        for brand in ("brewbird", "kettleandco")
    ),
    # bench/brand_recipes/grounded60-lr3e-4.yaml: the replies and train.yaml's 60 grounded-voice
    # examples, 40 steps at 448 tokens (2-4 minutes per brand on 2 cores)
    quick_train={**QUICK_STEPS, "max_length": 448, "learning_rate": 3e-4},
)

if __name__ == "__main__":
    run(DEMO)
