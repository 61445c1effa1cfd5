"""Reliability table: runs every test marked `reliability` (load, faults, bad input, tenants;
each starts the real parts) and builds the README's table from what they measured.

    .venv/bin/python -m bench.reliability_bench              # soak 180 s, ~10 minutes in all
    .venv/bin/python -m bench.reliability_bench --soak-s 60

The tests write their figures and outcomes to a log (tests/helpers/reliability.py); this turns
the log into bench/results/reliability.{json,md}, which also replaces the table between the
`<!-- bench:reliability -->` markers in README.md. A failed test stays in the table as failed,
and the command then exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import machine, markdown_table, write_results

REPO = Path(__file__).resolve().parents[1]
AREAS = ("Load", "Faults", "Bad input", "Tenants and keys")
UNITS = {"_ms": " ms", "_s": " s", "_mib": " MiB"}


def run_tests(log: Path, soak_s: float, extra: list[str]) -> int:
    env = {**os.environ, "HYBRID_RELIABILITY_LOG": str(log), "HYBRID_SOAK_S": str(soak_s)}
    command = [sys.executable, "-m", "pytest", "-m", "reliability", "-q", "-p", "no:cacheprovider"]
    return subprocess.run([*command, *extra], cwd=REPO, env=env).returncode


def read_log(log: Path) -> list[dict]:
    """One row per reliability test: its figures (possibly several checks) and outcome."""
    figures: dict[str, list[dict]] = {}
    outcomes: dict[str, dict] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["kind"] == "figures":
            figures.setdefault(entry["test"], []).append(entry)
        else:
            outcomes[entry["test"]] = entry
    rows = []
    for test, outcome in outcomes.items():
        for entry in figures.get(test) or [{"area": "?", "check": test, "figures": {}}]:
            rows.append(
                {
                    "area": entry["area"],
                    "check": entry["check"],
                    "figures": entry["figures"],
                    "test": test,
                    "outcome": outcome["outcome"],
                    "duration_s": outcome["duration_s"],
                }
            )
    order = {area: i for i, area in enumerate(AREAS)}
    return sorted(rows, key=lambda r: (order.get(r["area"], len(AREAS)), r["test"]))


def show(name: str, value) -> str:
    if isinstance(value, bool):
        value = "yes" if value else "no"
    for suffix, unit in UNITS.items():
        if name.endswith(suffix):
            return f"{name.removesuffix(suffix).replace('_', ' ')} {value}{unit}"
    return f"{name.replace('_', ' ')} {value}"


def lost(rows: list[dict]) -> int:
    return sum(
        int(value)
        for row in rows
        for name, value in row["figures"].items()
        if name.startswith("lost") or name.endswith("_lost")
    )


def table(rows: list[dict]) -> str:
    passed = sum(r["outcome"] == "passed" for r in rows)
    errors = sum(int(r["figures"].get("errors", 0)) for r in rows)
    summary = (
        f"{passed} of {len(rows)} checks passed; requests failed under load: {errors}; "
        f"data lost: {'none' if lost(rows) == 0 else lost(rows)}."
    )
    body = markdown_table(
        ["Area", "What was tried", "Measured", "Result", "Test"],
        [
            [
                r["area"],
                r["check"],
                " · ".join(show(k, v) for k, v in r["figures"].items()),
                r["outcome"],
                f"`{r['test'].split('::')[0].removeprefix('tests/')}`",
            ]
            for r in rows
        ],
    )
    return summary + "\n\n" + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak-s", type=float, default=180.0, help="soak duration in seconds")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -x)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "reliability.jsonl"
        log.touch()
        code = run_tests(log, args.soak_s, args.pytest_args)
        rows = read_log(log)
    if not rows:
        print("no reliability test ran", file=sys.stderr)
        return 1
    text = table(rows)
    write_results("reliability", {"machine": machine(), "soak_s": args.soak_s, "rows": rows}, text)
    print(text)
    return 0 if code == 0 and all(r["outcome"] == "passed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
