"""Which voice-adapter recipe keeps the report's facts? Each recipe in bench/adapter_recipes/
is trained with `hybrid train`, registered as `ceo-voice` in a registry of its own, served with
`hybrid serve`, and scored with bench/app_eval.py on the CEO report's labelled set: the app
with the adapter (northwind-ceo) against the same retrieval without it (northwind-base), in one
run, question by question. Writes bench/results/adapter_recipes/RECIPE.json and the table
bench/results/adapter_recipes.md (+ the README block).

    .venv/bin/python examples/ceo-report-qa/run.py --quick     # once: the knowledge base
    .venv/bin/python -m bench.adapter_recipes [RECIPE ...] [--sampling JSON]
    .venv/bin/python -m bench.adapter_recipes --table          # the table from stored runs

One recipe takes 1-3 minutes to train on a quiet 2-core machine (much longer next to another
job: pause it) and about 5 minutes to score. Runs are stored per recipe and sampling, so the
table can compare a recipe with and without, e.g., the old repetition penalty.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    PAIRED_HEADERS,
    RECIPE_HEADER,
    RESULTS,
    annotate,
    first_comment,
    isolated_work_folder,
    markdown_table,
    paired_cells,
    publish_table,
    recipe_parser,
    recipe_runs,
)

RECIPES = Path(__file__).resolve().parent / "adapter_recipes"
STORED = RESULTS / "adapter_recipes"
WORK = REPO / "artifacts" / "ceo-report-qa"


def run_name(recipe: str, sampling: dict) -> str:
    extra = "".join(f"_{k}{v}" for k, v in sorted(sampling.items()))
    return recipe + extra.replace("repetition_penalty", "rp")


def train_and_score(
    recipe: Path, sampling: dict, threads: int, reuse: bool = False, bind_figures: bool = True
) -> Path:
    """Train `recipe` (or, with `reuse`, take the adapter trained before), register it in a
    registry of its own, score it; the stored run's path."""
    name = recipe.stem
    work = isolated_work_folder(
        REPO / "artifacts" / "adapter-recipes" / name, WORK, threads=threads
    )
    adapter = work.path / "adapter"
    started = time.monotonic()
    train_s = None
    if not (reuse and (adapter / "adapter_config.json").is_file()):
        work.hybrid("train", str(recipe), "--overwrite", f"--set=output_dir={adapter}")
        train_s = round(time.monotonic() - started)
    work.register(adapter, "ceo-voice")
    out = run_name(name, sampling) + ("" if bind_figures else "_nobind")
    work.score(
        f"adapter_recipes/{out}",
        *["--sampling", json.dumps(sampling)],
        *([] if bind_figures else ["--no-binding"]),
    )
    path = STORED / f"{out}.json"
    return annotate(path, recipe={"file": str(recipe.relative_to(REPO)), "train_s": train_s})


def table() -> str:
    rows = []
    for run, recipe, comparison in recipe_runs(STORED):
        correct = comparison["correct"]
        sampling = {
            k: v
            for k, v in run["settings"]["sampling"].items()
            if k not in ("temperature", "max_tokens")
        }
        binding = (
            "on" if run.get("bind_figures", run["recipe"].get("bind_figures", True)) else "off"
        )
        rows.append(
            [
                f"`{recipe.stem}`: {first_comment(recipe)}",
                json.dumps(sampling).strip("{}").replace('"', "") or "-",
                binding,
                f"{correct['app']}/{correct['n']}",
                f"{correct['against']}/{correct['n']}",
                *paired_cells(comparison),
            ]
        )
    headers = [
        RECIPE_HEADER,
        "sampling over the apps' (greedy, 120 tokens)",
        "figure binding",
        "northwind-ceo right",
        "northwind-base right (same run)",
        *PAIRED_HEADERS,
    ]
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    parser = recipe_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sampling", default="{}", help="JSON over the apps' sampling values")
    args = parser.parse_args(argv)
    if not args.table:
        if not (WORK / "hybrid.yaml").is_file():
            raise SystemExit(f"{WORK / 'hybrid.yaml'} not found: run examples/ceo-report-qa/run.py")
        names = args.recipes or sorted(p.stem for p in RECIPES.glob("*.yaml"))
        for name in names:
            recipe = RECIPES / f"{name}.yaml"
            train_and_score(
                recipe, json.loads(args.sampling), args.threads, args.reuse, not args.no_binding
            )
    publish_table("adapter_recipes", table())


if __name__ == "__main__":
    main()
