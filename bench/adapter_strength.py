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
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import RESULTS, annotate, markdown_table, paired_cells, update_readme  # noqa: E402

STORED = RESULTS / "adapter_strength"
HYBRID = [sys.executable, "-m", "hybrid.cli"]


def score(work: Path, factor: float) -> Path:
    """Scale the work folder's ceo-voice adapter, register it alone, score it; the stored run."""
    runs = REPO / "artifacts" / "adapter-strength" / f"x{factor:g}"
    shutil.rmtree(runs, ignore_errors=True)
    (runs / "logs").mkdir(parents=True)
    shutil.copytree(work / "chroma", runs / "chroma")
    config = yaml.safe_load((work / "hybrid.yaml").read_text(encoding="utf-8"))
    config["store"]["path"] = str(runs / "chroma")
    config["adapters"]["registry"] = str(runs / "registry")
    config["engine"]["log_file"] = str(runs / "logs" / "vllm.log")
    (runs / "hybrid.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    hybrid = [*HYBRID, "--config", str(runs / "hybrid.yaml")]
    scaled = runs / "ceo-voice"
    adapter = work / "adapters" / "ceo-voice"
    subprocess.run(
        [*hybrid, "adapter", "scale", str(adapter), f"--factor={factor}", f"--out={scaled}"],
        check=True,
        env=env,
    )
    subprocess.run(
        [*hybrid, "adapter", "register", str(scaled), "--name", "ceo-voice", "--offline"],
        check=True,
        env=env,
    )
    name = f"adapter_strength/x{factor:g}"
    subprocess.run(
        [sys.executable, "-m", "bench.app_eval", "--work-dir", str(runs), "--name", name],
        check=True,
        env=env,
        cwd=REPO,
    )
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
        "right only with / only without the adapter",
        "voice, adapter - base (95% CI)",
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
    text = table()
    (RESULTS / "adapter_strength.md").write_text(text + "\n", encoding="utf-8")
    update_readme("adapter_strength", text)
    print(text)


if __name__ == "__main__":
    main()
