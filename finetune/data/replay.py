"""Replay: general instruction data mixed into a style dataset, so the adapter keeps following
instructions while it learns the voice (less forgetting)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from finetune.data.schema import Example
from finetune.errors import DatasetError

MAX_REPLAY_SHARE = 0.5


def replay_count(examples: int, share: float) -> int:
    """Replay examples needed so that they make up `share` of the mixed set."""
    return round(share * examples / (1 - share))


def mix_replay(
    examples: Sequence[Example], replay_examples: Sequence[Example], share: float, seed: int
) -> list[Example]:
    """All `examples` plus a sample of `replay_examples` making up `share` of the result.

    The replay sample and the order of the result depend only on `seed`.

    Raises:
        DatasetError: share outside 0..0.5, no examples, or a replay set too small for the share
            (the message gives the largest share it can serve).
    """
    if not 0 <= share <= MAX_REPLAY_SHARE:
        raise DatasetError(
            f"replay share {share} is outside 0..{MAX_REPLAY_SHARE}; replay should stay the "
            "minority of the data (0.1 is a common choice)"
        )
    if not examples:
        raise DatasetError("no training examples to mix replay data into")
    needed = replay_count(len(examples), share)
    if needed == 0:
        return list(examples)
    if len(replay_examples) < needed:
        most = len(replay_examples) / (len(examples) + len(replay_examples))
        raise DatasetError(
            f"replay share {share} of {len(examples)} training examples needs {needed} replay "
            f"examples, but the replay data has {len(replay_examples)}; add replay data or "
            f"lower the share to at most {int(most * 100) / 100}"
        )
    rng = random.Random(seed)
    mixed = list(examples) + rng.sample(list(replay_examples), needed)
    rng.shuffle(mixed)
    return mixed
