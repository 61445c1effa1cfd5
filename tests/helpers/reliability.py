"""Figures for the README's reliability table, written by the tests that measure them.

A test marked `reliability` calls `record(area, check, **figures)` with what it measured; the
conftest adds each such test's outcome. Both go, one JSON object per line, to the file named by
$HYBRID_RELIABILITY_LOG, and only when it is set: `make bench` (bench/reliability_bench.py) sets
it, runs those tests and builds the table from the lines. Without it, `record` does nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LOG_ENV = "HYBRID_RELIABILITY_LOG"
AREAS = ("Load", "Faults", "Bad input", "Tenants and keys")


def _append(entry: dict) -> None:
    target = os.environ.get(LOG_ENV)
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry, sort_keys=False) + "\n")


def current_test() -> str:
    """The running test's node id (pytest sets PYTEST_CURRENT_TEST during each phase)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]


def record(area: str, check: str, **figures: int | float | str) -> None:
    """One row of the table: `area` (one of AREAS), what was checked, and the figures measured
    (names in snake case with their unit, e.g. `p99_ms=310`, `lost=0`)."""
    if area not in AREAS:
        raise ValueError(f"area must be one of {AREAS}, got {area!r}")
    _append(
        {
            "kind": "figures",
            "test": current_test(),
            "area": area,
            "check": check,
            "figures": figures,
        }
    )


def record_outcome(test: str, outcome: str, duration_s: float) -> None:
    _append(
        {"kind": "outcome", "test": test, "outcome": outcome, "duration_s": round(duration_s, 1)}
    )
