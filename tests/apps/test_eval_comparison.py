"""The paired comparison of `hybrid eval app`: a voice difference larger than the noise gets an
interval above zero, noise alone an interval around zero; wins and losses are counted per
question."""

from __future__ import annotations

import numpy as np

from hybrid.evaluation.comparison import compare, comparison_line
from hybrid.evaluation.scoring import CaseResult


def results(voices, correct) -> list[CaseResult]:
    return [
        CaseResult(
            line=i,
            question=f"q{i}",
            answerable=True,
            multi_turn=False,
            answer="a",
            correct=c,
            cited_gold=None,
            given_gold=None,
            abstained=False,
            grounded=None,
            latency_s=1.0,
            prompt_tokens=1,
            completion_tokens=1,
            voice=v,
        )
        for i, (v, c) in enumerate(zip(voices, correct, strict=True), 1)
    ]


def test_a_real_voice_difference_has_an_interval_above_zero():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, 33)
    adapter = base + 0.08 + rng.normal(0, 0.05, 33)
    right_a = [True] * 10 + [False] * 23
    right_b = [True] * 8 + [False, True, True] + [False] * 22
    c = compare("ceo", results(adapter, right_a), "base", results(base, right_b))
    v = c["voice_difference"]
    assert 0.05 < v["mean"] < 0.11 and 0 < v["low"] < v["mean"] < v["high"]
    assert c["correct"] == {"app": 10, "against": 10, "only_app": 1, "only_against": 1, "n": 33}
    line = comparison_line(c)
    assert line.startswith("ceo vs base: voice +0.0") and "right 10 vs 10 (1 only ceo" in line


def test_noise_alone_gives_an_interval_around_zero():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.2, 0.6, 33), rng.uniform(0.2, 0.6, 33)
    v = compare("x", results(a, [None] * 33), "y", results(b, [None] * 33))["voice_difference"]
    assert v["low"] < 0 < v["high"]


def test_unscored_questions_are_left_out():
    a = results([0.5, None, 0.7], [True, None, False])
    b = results([0.4, 0.3, None], [False, None, True])
    c = compare("x", a, "y", b)
    v = c["voice_difference"]
    assert v["n"] == 1 and v["mean"] is None  # one pair: no interval, no claim
    assert c["correct"] == {"app": 1, "against": 1, "only_app": 1, "only_against": 1, "n": 2}


def test_the_voice_anchor_is_reported_beside_the_difference():
    a, b = results([0.5, 0.6, 0.55], [True, False, True]), results([0.4, 0.5, 0.45], [True] * 3)
    plain = compare("x", a, "y", b)
    assert plain["voice_anchor"] is None and "anchor" not in comparison_line(plain)
    anchored = compare("x", a, "y", b, [(0.62, 0.4), (0.69, 0.5), (0.66, 0.45)])
    assert abs(anchored["voice_anchor"]["mean"] - (0.22 + 0.19 + 0.21) / 3) < 1e-9
    assert "voice +0.10 (95% CI" in comparison_line(anchored)
    assert "; anchor +0.21)" in comparison_line(anchored)
