"""Which voice-adapter recipe keeps the brands' facts? The branded-chatbot twin of
bench/adapter_recipes.py: each recipe in bench/brand_recipes/ is applied to both brands'
training configs (its `set:` values over theirs, its `context:` section in place of theirs),
both adapters are trained with `hybrid train` and registered in a registry of their own, and
bench/app_eval.py scores each brand's app against the same retrieval without its adapter
(brewbird-support vs brewbird-base, kettleandco-support vs kettleandco-base) on the brand's
labelled questions. Writes bench/results/brand_recipes/RECIPE_APP.json and the table
bench/results/brand_recipes.md (+ the README block).

    .venv/bin/python examples/branded-chatbot/run.py --quick   # once: the knowledge bases
    .venv/bin/python -m bench.brand_recipes [RECIPE ...]
    .venv/bin/python -m bench.brand_recipes --table            # the table from stored runs

Two trainings of 1-4 minutes each on a quiet 2-core machine, then about 6 minutes to score.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

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

RECIPES = Path(__file__).resolve().parent / "brand_recipes"
STORED = RESULTS / "brand_recipes"
EXAMPLE = REPO / "examples" / "branded-chatbot"
WORK = REPO / "artifacts" / "branded-chatbot"
BRANDS = ("brewbird", "kettleandco")


def brand_config(recipe: dict, brand: str, work: Path) -> Path:
    """The brand's training config with the recipe applied, written into `work` (paths in
    it made absolute, since the file no longer sits beside the brand's data)."""
    folder = EXAMPLE / "brands" / brand
    config = yaml.safe_load((folder / "train.yaml").read_text(encoding="utf-8"))
    config["data"] = [str((folder / d).resolve()) for d in config["data"]]
    config.update(recipe.get("set", {}))
    own = config.get("context")
    context, base = (recipe["context"], EXAMPLE) if "context" in recipe else (own, folder)
    if context is not None:  # a recipe's holdout paths are relative to the example folder
        context = dict(context)
        context["app"] = str((folder / own["app"]).resolve())
        context["holdout"] = [str((base / h).resolve()) for h in context.get("holdout", [])]
        config["context"] = context
    config["output_dir"] = str(work / "adapters" / f"{brand}-voice")
    path = work / f"train-{brand}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def train_and_score(
    recipe_file: Path, threads: int, reuse: bool = False, bind_figures: bool = True
) -> list[Path]:
    """Train both brands' adapters with the recipe (or, with `reuse`, take the ones trained
    before), register them in a registry of their own, score both brands; the stored runs."""
    name = recipe_file.stem
    recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}
    folder = REPO / "artifacts" / "brand-recipes" / name
    work = isolated_work_folder(folder, WORK, threads=threads, own_store=True)
    train_s = {}
    for brand in BRANDS:
        started = time.monotonic()
        adapter = folder / "adapters" / f"{brand}-voice"
        if not (reuse and (adapter / "adapter_config.json").is_file()):
            work.hybrid("train", str(brand_config(recipe, brand, folder)), "--overwrite")
            train_s[brand] = round(time.monotonic() - started)
        work.register(adapter, f"{brand}-voice")
    out = name + ("" if bind_figures else "_nobind")
    work.score(
        f"brand_recipes/{out}",
        *["--example", "branded-chatbot"],
        *([] if bind_figures else ["--no-binding"]),
    )
    paths = []
    for brand in BRANDS:
        path = STORED / f"{out}_{brand}-support.json"
        recipe_info = {"file": str(recipe_file.relative_to(REPO)), "train_s": train_s.get(brand)}
        paths.append(annotate(path, recipe=recipe_info))
    return paths


def table() -> str:
    rows = []
    for run, recipe, comparison in recipe_runs(STORED):
        correct = comparison["correct"]
        app, base = run["settings"]["apps"][:2]
        rows.append(
            [
                f"`{recipe.stem}`: {first_comment(recipe)}",
                app,
                "on" if run.get("bind_figures", True) else "off",
                f"{correct['app']}/{correct['n']}",
                f"{correct['against']}/{correct['n']} ({base})",
                *paired_cells(comparison),
            ]
        )
    headers = [
        RECIPE_HEADER,
        "app",
        "figure binding",
        "app right",
        "base app right (same run)",
        *PAIRED_HEADERS,
    ]
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    parser = recipe_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    if not args.table:
        if not (WORK / "hybrid.yaml").is_file():
            raise SystemExit(f"{WORK / 'hybrid.yaml'} not found: run {EXAMPLE / 'run.py'} --quick")
        names = args.recipes or sorted(p.stem for p in RECIPES.glob("*.yaml"))
        for name in names:
            train_and_score(RECIPES / f"{name}.yaml", args.threads, args.reuse, not args.no_binding)
    publish_table("brand_recipes", table())


if __name__ == "__main__":
    main()
