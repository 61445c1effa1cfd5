"""The app under test against each other app, question by question: is its voice score higher
by more than the noise of 30-odd questions, and which questions does each get right that the
other gets wrong? Paired, because both apps answer the same questions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hybrid.evaluation.scoring import CaseResult

CONFIDENCE = 0.95


def compare(
    app: str,
    results: Sequence[CaseResult],
    other: str,
    others: Sequence[CaseResult],
    anchor: Sequence[tuple[float, float]] = (),
):
    """`app` against `other` on the same questions (results in the same order). `anchor`: the
    voice scores of `other`'s answers with and without a closing sentence of the style data
    (hybrid/evaluation/voice.py), the scale against which the voice difference is read."""
    pairs = list(zip(results, others, strict=True))
    voice = [(a.voice, b.voice) for a, b in pairs if a.voice is not None and b.voice is not None]
    scored = [(a.correct, b.correct) for a, b in pairs if a.correct is not None]
    return {
        "app": app,
        "against": other,
        "voice_difference": _paired_mean_difference(voice),
        "voice_anchor": _paired_mean_difference(list(anchor)) if anchor else None,
        "correct": {
            "app": sum(1 for a, _ in scored if a),
            "against": sum(1 for _, b in scored if b),
            "only_app": sum(1 for a, b in scored if a and not b),
            "only_against": sum(1 for a, b in scored if b and not a),
            "n": len(scored),
        },
    }


def _paired_mean_difference(pairs: list[tuple[float, float]]) -> dict:
    """Mean of `a - b` with its bootstrap confidence interval (scipy, BCa, seeded)."""
    if len(pairs) < 2:
        return {"mean": None, "low": None, "high": None, "n": len(pairs)}
    from scipy.stats import bootstrap

    differences = np.array([a - b for a, b in pairs])
    if np.allclose(differences, differences[0]):  # no spread: the interval is the value
        value = float(differences[0])
        return {"mean": value, "low": value, "high": value, "n": len(pairs)}
    interval = bootstrap(
        (differences,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=2000,
        random_state=np.random.default_rng(0),
    ).confidence_interval
    return {
        "mean": float(differences.mean()),
        "low": float(interval.low),
        "high": float(interval.high),
        "n": len(pairs),
    }


def comparison_line(comparison: dict) -> str:
    """E.g. `northwind-ceo vs northwind-base: voice +0.07 (95% CI +0.04..+0.10; anchor +0.08),
    right 9 vs 10 (2 only northwind-ceo, 3 only northwind-base)`."""
    v = comparison["voice_difference"]
    c = comparison["correct"]
    app, other = comparison["app"], comparison["against"]
    anchor = (comparison.get("voice_anchor") or {}).get("mean")
    voice = (
        "voice n/a"
        if v["mean"] is None
        else f"voice {v['mean']:+.2f} ({CONFIDENCE:.0%} CI {v['low']:+.2f}..{v['high']:+.2f}"
        + ("" if anchor is None else f"; anchor {anchor:+.2f}")
        + ")"
    )
    return (
        f"{app} vs {other}: {voice}, right {c['app']} vs {c['against']} "
        f"({c['only_app']} only {app}, {c['only_against']} only {other})"
    )
