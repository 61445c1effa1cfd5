"""Which packaged base model should be the default? Each model in finetune/base_models.py's
table is prepared (`hybrid model prepare NAME`), trained with the same adapter recipe as
make demo (bench/adapter_recipes/grounded60-lr3e-4.yaml, only base_model changed), served with
`hybrid serve` and scored with bench/app_eval.py on the CEO report's labelled set: the adapter
app (northwind-ceo) against the retrieval-only app (northwind-base), in one run. Writes
bench/results/base_models/RUN.json and bench/results/base_models.{json,md} (+ the README
block).

    .venv/bin/python examples/ceo-report-qa/run.py --quick     # once: the knowledge base
    .venv/bin/python -m bench.base_models [MODEL ...] [--set learning_rate=1e-3]
    .venv/bin/python -m bench.base_models --table              # the table from stored runs

One model takes 2-10 minutes to train on a quiet 2-core machine and 5-15 minutes to score.
The voice score is the same voice model for every base (fitted on the adapter's style data
against SmolLM2's cached base replies), so it rates each app against the same reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    HYBRID,
    RESULTS,
    isolated_work_folder,
    machine,
    markdown_table,
    write_results,
)

RECIPE = REPO / "bench" / "adapter_recipes" / "grounded60-lr3e-4.yaml"
STORED = RESULTS / "base_models"
EXAMPLE_WORK = REPO / "artifacts" / "ceo-report-qa"


def run_name(model: str, overrides: dict) -> str:
    return model + "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))


def train_and_score(model: str, recipe: Path, overrides: dict, threads: int, reuse: bool) -> Path:
    """Prepare `model`, train `recipe` on it (with `overrides`), serve and score both apps;
    the stored run's path."""
    name = run_name(model, overrides)
    work = isolated_work_folder(
        REPO / "artifacts" / "base-models" / name, EXAMPLE_WORK, threads=threads, engine_model=model
    )
    subprocess.run([*HYBRID, "model", "prepare", model], check=True, env=work.env)
    adapter = work.path / "adapter"
    sets = {"output_dir": adapter, "base_model": model, **overrides}
    if not (reuse and (adapter / "adapter_config.json").is_file()):
        work.hybrid(
            "train", str(recipe), "--overwrite", *[f"--set={k}={v}" for k, v in sets.items()]
        )
    work.register(adapter, "ceo-voice")
    work.score(f"base_models/{name}", "--threads", str(threads))
    path = STORED / f"{name}.json"
    stored = json.loads(path.read_text(encoding="utf-8"))
    trained = json.loads((adapter / "metrics.json").read_text(encoding="utf-8"))["final"]
    stored["base_model"] = model
    stored["recipe"] = {
        "file": str(recipe.relative_to(REPO)),
        "overrides": overrides,
        "steps": trained["steps"],
        "train_runtime_s": trained["runtime_s"],
        "s_per_step": round(trained["runtime_s"] / max(trained["steps_run"], 1), 2),
        "train_loss": trained["train_loss"],
        "threads": threads,
    }
    path.write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")
    return path


def step_times(models: list[str], recipe: Path, rounds: int, steps: int, threads: int) -> dict:
    """Training time per step measured side by side: the models take turns (`rounds` times,
    `steps` optimizer steps each), so another job on the machine slows them alike. Wall and
    seconds per step (the trainer's own time), the process's CPU seconds (loading included) and
    peak memory, per run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    config = EXAMPLE_WORK / "hybrid.yaml"
    found: dict[str, list] = {m: [] for m in models}
    for _ in range(rounds):
        for model in models:
            out = REPO / "artifacts" / "base-models" / "steps" / model
            timing = out.parent / f"{model}.time"
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    "/usr/bin/time",
                    "-o",
                    str(timing),
                    "-f",
                    "%U %S %M",
                    *HYBRID,
                    "--config",
                    str(config),
                    "train",
                    str(recipe),
                    "--overwrite",
                    f"--max-steps={steps}",
                    f"--set=output_dir={out}",
                    f"--set=base_model={model}",
                ],
                check=True,
                env=env,
            )
            user, system, rss_kib = timing.read_text().split()[-3:]
            final = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["final"]
            found[model].append(
                {
                    "s_per_step": round(final["runtime_s"] / final["steps_run"], 2),
                    "process_cpu_s": round(float(user) + float(system), 1),
                    "peak_rss_mib": round(int(rss_kib) / 1024),
                    "steps": final["steps_run"],
                }
            )
    return {"threads": threads, "recipe": str(recipe.relative_to(REPO)), "runs": found}


def row(run: dict) -> dict:
    """The figures the table shows, from one stored run."""
    comparison = run["comparisons"][0]
    correct, voice = comparison["correct"], comparison["voice_difference"]
    apps = {s["app"]: s for s in run["summaries"]}
    adapter_app = apps[comparison["app"]]
    return {
        "base_model": run["base_model"],
        "overrides": run["recipe"]["overrides"],
        "adapter_right": correct["app"],
        "base_right": correct["against"],
        "n": correct["n"],
        "voice_difference": voice,
        "latency_s_p50": {a: round(s["latency_s"]["p50"], 1) for a, s in apps.items()},
        "completion_tokens_per_s": {
            a: round(s["tokens"]["completion_per_s"], 2) for a, s in apps.items()
        },
        "ran_to_max_tokens": {
            a: sum(
                1
                for r in run["results"][a]
                if r["completion_tokens"] == run["settings"]["sampling"]["max_tokens"]
            )
            for a in apps
        },
        "answers": {a: len(run["results"][a]) for a in apps},
        "s_per_step": run["recipe"]["s_per_step"],
        "train_loss": run["recipe"]["train_loss"],
        "serve_ready_s": run.get("serve_ready_s"),
        "errors": adapter_app["errors"],
    }


def table(rows: list[dict], timed: dict | None) -> str:
    lines = []
    for r in rows:
        lat, tps = r["latency_s_p50"], r["completion_tokens_per_s"]
        v = r["voice_difference"]
        lr = ", ".join(f"{k} {v}" for k, v in r["overrides"].items()) or "recipe as is"
        lines.append(
            [
                f"{r['base_model']} ({lr})",
                f"{r['base_right']}/{r['n']}",
                f"{r['adapter_right']}/{r['n']}",
                f"{v['mean']:+.2f} ({v['low']:+.2f}..{v['high']:+.2f})",
                f"{lat['northwind-ceo']} / {lat['northwind-base']}",
                f"{tps['northwind-ceo']} / {tps['northwind-base']}",
                "{} / {} of {}".format(
                    r["ran_to_max_tokens"]["northwind-ceo"],
                    r["ran_to_max_tokens"]["northwind-base"],
                    r["answers"]["northwind-ceo"],
                ),
                f"{r['s_per_step']}",
                f"{r['serve_ready_s']}",
            ]
        )
    headers = [
        "base model (recipe grounded60-lr3e-4)",
        "northwind-base right",
        "northwind-ceo right",
        "voice, adapter - base (95% CI)",
        "latency p50 s, ceo / base",
        "completion tokens/s, ceo / base",
        "answers cut at 120 tokens, ceo / base",
        "train s/step in that run (batch 2, 448 tokens)",
        "hybrid serve ready s",
    ]
    text = markdown_table(headers, lines)
    if timed:
        steps = [
            [
                model,
                " / ".join(str(r["s_per_step"]) for r in runs),
                " / ".join(str(r["process_cpu_s"]) for r in runs),
                max(r["peak_rss_mib"] for r in runs),
            ]
            for model, runs in timed["runs"].items()
        ]
        n = next(iter(timed["runs"].values()))[0]["steps"]
        text += (
            f"\n\nTraining side by side (the models take turns, {n} steps a run, "
            f"{timed['threads']} threads, same recipe):\n\n"
        )
        text += markdown_table(
            [
                "base model",
                "wall s/step, each run",
                "process CPU s, whole run (load included)",
                "peak memory MiB",
            ],
            steps,
        )
    return text


def main(argv: list[str] | None = None) -> None:
    from finetune.base_models import PACKAGED_MODELS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help=f"default: {', '.join(PACKAGED_MODELS)}")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], help="recipe override key=value"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    parser.add_argument("--reuse", action="store_true", help="score adapters trained before")
    parser.add_argument(
        "--step-time",
        type=int,
        metavar="STEPS",
        help="only time training side by side: the models take turns, 2 rounds of STEPS steps",
    )
    args = parser.parse_args(argv)
    steps_file = RESULTS / "base_models_step_time.json"
    if args.step_time:
        timed = step_times(
            args.models or list(PACKAGED_MODELS),
            args.recipe.resolve(),
            2,
            args.step_time,
            args.threads,
        )
        steps_file.write_text(json.dumps(timed, indent=2) + "\n", encoding="utf-8")
    elif not args.table:
        if not (EXAMPLE_WORK / "hybrid.yaml").is_file():
            raise SystemExit(
                f"{EXAMPLE_WORK / 'hybrid.yaml'} not found: run examples/ceo-report-qa/run.py"
            )
        overrides = dict(s.split("=", 1) for s in args.sets)
        for model in args.models or list(PACKAGED_MODELS):
            started = time.monotonic()
            train_and_score(model, args.recipe.resolve(), overrides, args.threads, args.reuse)
            print(f"{model}: {time.monotonic() - started:.0f} s in all", flush=True)
    rows = [row(json.loads(p.read_text(encoding="utf-8"))) for p in sorted(STORED.glob("*.json"))]
    timed = json.loads(steps_file.read_text(encoding="utf-8")) if steps_file.is_file() else None
    text = table(rows, timed)
    write_results("base_models", {"machine": machine(), "runs": rows, "step_time": timed}, text)
    print(text)


if __name__ == "__main__":
    main()
