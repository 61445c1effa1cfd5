"""How strong should the voice adapter be? make demo's trained ceo-voice adapter scaled by
`hybrid adapter scale` (lora_alpha x factor), each copy registered in a registry of its own,
served and scored by bench/app_eval.py on the CEO report's labelled set against the base app in
the same run. Writes bench/results/adapter_strength/xFACTOR.json and the table
bench/results/adapter_strength.md (+ the README block).

    .venv/bin/python examples/ceo-report-qa/run.py --quick        # once: the trained adapter
    .venv/bin/python -m bench.adapter_strength [FACTOR ...]        # default 1 0.75 0.5
    .venv/bin/python -m bench.adapter_strength --table             # the table from stored runs

About 9 minutes a factor on a quiet 2-core machine (74 questions through both apps).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    PAIRED_HEADERS,
    RESULTS,
    annotate,
    isolated_work_folder,
    markdown_table,
    paired_cells,
    publish_table,
)

STORED = RESULTS / "adapter_strength"


def score(work: Path, factor: float) -> Path:
    """Scale the work folder's ceo-voice adapter, register it alone, score it; the stored run."""
    runs = REPO / "artifacts" / "adapter-strength" / f"x{factor:g}"
    shutil.rmtree(runs, ignore_errors=True)
    folder = isolated_work_folder(runs, work, own_store=True)
    scaled = runs / "ceo-voice"
    adapter = work / "adapters" / "ceo-voice"
    folder.hybrid("adapter", "scale", str(adapter), f"--factor={factor}", f"--out={scaled}")
    folder.register(scaled, "ceo-voice")
    name = f"adapter_strength/x{factor:g}"
    folder.score(name)
    return annotate(RESULTS / f"{name}.json", strength={"factor": factor, "adapter": str(adapter)})


def table() -> str:
    rows = []
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in STORED.glob("*.json")]
    for run in sorted(runs, key=lambda r: -r["strength"]["factor"]):
        comparison = run["comparisons"][0]
        correct = comparison["correct"]
        summaries = {s["app"]: s for s in run["summaries"]}
        rows.append(
            [
                f"x{run['strength']['factor']:g}",
                f"{correct['app']}/{correct['n']}",
                f"{correct['against']}/{correct['n']}",
                *paired_cells(comparison),
                f"{summaries['northwind-ceo']['voice']['mean']:.2f}",
            ]
        )
    headers = [
        "adapter strength (lora_alpha x)",
        "northwind-ceo right",
        "northwind-base right (same run)",
        *PAIRED_HEADERS,
        "voice score, adapter app",
    ]
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("factors", nargs="*", type=float, help="default: 1 0.75 0.5")
    parser.add_argument("--work-dir", type=Path, default=REPO / "artifacts" / "ceo-report-qa")
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    args = parser.parse_args(argv)
    if not args.table:
        work = args.work_dir.resolve()
        if not (work / "adapters" / "ceo-voice" / "adapter_config.json").is_file():
            raise SystemExit(f"no trained adapter in {work}: run examples/ceo-report-qa/run.py")
        for factor in args.factors or [1.0, 0.75, 0.5]:
            score(work, factor)
    publish_table("adapter_strength", table())


if __name__ == "__main__":
    main()
