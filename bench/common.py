"""Helpers shared by the benchmarks: timing, percentiles, JSON + markdown table output."""

from __future__ import annotations

import json
import platform
import statistics
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
    }


@contextmanager
def timer():
    box = {}
    start = time.perf_counter()
    yield box
    box["s"] = time.perf_counter() - start


def machine() -> dict:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_results(name: str, payload: dict, table: str, readme: str | None = None) -> Path:
    """bench/results/NAME.json and NAME.md, and the README's copy of the table (or of `readme`,
    a shorter text) when the README marks a place for it (`<!-- bench:NAME -->` ...
    `<!-- /bench:NAME -->`)."""
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(table + "\n", encoding="utf-8")
    update_readme(name, table if readme is None else readme)
    return path


def update_readme(name: str, text: str) -> bool:
    """Replace the README block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    readme = README.read_text(encoding="utf-8")
    if begin not in readme or end not in readme:
        return False
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{begin}\n{text}\n{end}{tail}", encoding="utf-8")
    return True


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def annotate(path: Path, **fields) -> Path:
    """Add top-level fields to a stored results JSON file (e.g. the recipe that produced it)."""
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored.update(fields)
    path.write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")
    return path


def first_comment(path: Path) -> str:
    """A recipe file's first comment line: its one-line description."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").strip()


def paired_cells(comparison: dict) -> list[str]:
    """A stored app comparison's "won / lost" and "voice difference (95% CI)" table cells; the
    voice anchor (hybrid/evaluation/voice.py) follows the interval in runs that measured it."""
    correct, voice = comparison["correct"], comparison["voice_difference"]
    anchor = (comparison.get("voice_anchor") or {}).get("mean")
    return [
        f"{correct['only_app']} / {correct['only_against']}",
        f"{voice['mean']:+.2f} ({voice['low']:+.2f}..{voice['high']:+.2f})"
        + ("" if anchor is None else f", anchor {anchor:+.2f}"),
    ]


def recipe_parser(description: str):
    """The command line shared by the recipe benches (bench/adapter_recipes.py,
    bench/brand_recipes.py): recipe names, torch threads, table only, reuse trained adapters,
    serve without figure binding."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("recipes", nargs="*", help="recipe names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    parser.add_argument("--reuse", action="store_true", help="score adapters trained before")
    parser.add_argument(
        "--no-binding", action="store_true", help="serve the apps with bind_figures off"
    )
    return parser
