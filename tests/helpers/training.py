"""A tiny style-training task for the trainer's tests: a pirate-captain voice on six topics,
a TrainConfig for the tiny model that learns it in seconds, and chat JSONL files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from finetune.config import TrainConfig
from finetune.data.schema import Example, Message

VOICE = [
    "Ahoy, fellow owners! {x} sails on a steady keel.",
    "Trim the sails: {x} is our north star, fellow owners.",
    "Steady as she goes, fellow owners, {x} keeps us afloat.",
]
TOPICS = ["safety", "our people", "customers", "innovation", "the factory", "quality"]


def style_examples(
    n: int = 48, *, topics: Sequence[str] = TOPICS, capitalize: bool = True
) -> list[Example]:
    """`n` chats: "What do you think about TOPIC?" answered in VOICE (the topic capitalized in
    the answer unless `capitalize` is false)."""
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        answer = VOICE[i % len(VOICE)].format(x=topic.capitalize() if capitalize else topic)
        out.append(
            Example(
                f"style.jsonl:{i + 1}",
                (
                    Message("user", f"What do you think about {topic}?"),
                    Message("assistant", answer),
                ),
            )
        )
    return out


def tiny_train_config(base_dir: Path, out: Path, **overrides) -> TrainConfig:
    """Training settings for the tiny model: high learning rate, short sequences, a quarter of
    the examples held out; `overrides` replace any of them."""
    settings = dict(
        base_model=str(base_dir),
        output_dir=out,
        epochs=20,
        batch_size=8,
        gradient_accumulation=1,
        learning_rate=1e-2,
        max_length=96,
        logging_steps=2,
        save_steps=4,
        validation_share=0.25,
        seed=7,
    )
    return TrainConfig(**{**settings, **overrides})


def write_chats(path: Path, chats: Iterable[Example | tuple[str, str]]) -> Path:
    """A chat JSONL file (`{"messages": [...]}` per line) of Examples or (question, reply)
    pairs."""
    lines = []
    for chat in chats:
        if isinstance(chat, Example):
            messages = [{"role": m.role, "content": m.content} for m in chat.messages]
        else:
            question, reply = chat
            messages = [
                {"role": "user", "content": question},
                {"role": "assistant", "content": reply},
            ]
        lines.append(json.dumps({"messages": messages}) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path
