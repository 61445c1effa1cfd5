"""Replay mix: the asked share, deterministic by seed, a clear error when replay runs short."""

from __future__ import annotations

import pytest

from finetune.data import mix_replay
from finetune.errors import DatasetError
from tests.finetune.datasets import varied_chats


def test_replay_makes_up_the_share_and_keeps_every_example():
    own = varied_chats(90, origin="style.jsonl")
    replay = varied_chats(500, seed=1, origin="general.jsonl")
    mixed = mix_replay(own, replay, share=0.1, seed=7)
    from_replay = [e for e in mixed if e.origin.startswith("general.jsonl")]
    assert len(mixed) == 100 and len(from_replay) == 10
    assert sorted(e.origin for e in mixed if e.origin.startswith("style")) == sorted(
        e.origin for e in own
    )


def test_replay_mix_is_deterministic_by_seed():
    own, replay = varied_chats(60), varied_chats(200, seed=1, origin="general.jsonl")
    first = mix_replay(own, replay, 0.25, seed=3)
    assert first == mix_replay(own, replay, 0.25, seed=3)
    assert first != mix_replay(own, replay, 0.25, seed=4)
    assert len([e for e in first if e.origin.startswith("general")]) == 20


def test_zero_share_returns_the_examples_unchanged():
    own = varied_chats(10)
    assert mix_replay(own, [], 0.0, seed=0) == own


def test_too_small_replay_set_says_the_largest_share_it_serves():
    with pytest.raises(DatasetError) as info:
        mix_replay(varied_chats(100), varied_chats(20, seed=1), 0.3, seed=0)
    assert str(info.value) == (
        "replay share 0.3 of 100 training examples needs 43 replay examples, but the replay "
        "data has 20; add replay data or lower the share to at most 0.16"
    )


@pytest.mark.parametrize("share", [-0.1, 0.6])
def test_share_outside_the_range_is_refused(share):
    with pytest.raises(DatasetError, match=rf"replay share {share} is outside 0..0.5"):
        mix_replay(varied_chats(10), varied_chats(10), share, seed=0)
