"""Small purpose-built training sets for the data tests (deterministic, no files needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from finetune.data.schema import Example, Message

WORDS = [
    "river",
    "stone",
    "lantern",
    "copper",
    "meadow",
    "violet",
    "harbour",
    "thistle",
    "ember",
    "willow",
    "quartz",
    "falcon",
    "saffron",
    "juniper",
    "marble",
    "orchard",
    "tundra",
    "velvet",
    "cobalt",
    "prairie",
    "maple",
    "glacier",
    "pebble",
    "cinder",
    "hollow",
    "larch",
    "sorrel",
    "bramble",
    "aspen",
    "heron",
]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def varied_chats(n: int, seed: int = 0, origin: str = "style.jsonl") -> list[Example]:
    """n conversations whose prompts and replies share no long word sequences."""
    rng = random.Random(seed)
    return [
        Example(
            f"{origin}:{i + 1}",
            (
                Message("user", sentence(rng, 8)),
                Message("assistant", " ".join(sentence(rng, 10) for _ in range(3))),
            ),
        )
        for i in range(n)
    ]


def write_jsonl(path: Path, records: list) -> Path:
    """Records are dicts (dumped) or strings (written as they are, e.g. broken JSON)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
