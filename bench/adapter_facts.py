"""Do voice adapters keep the facts? Trains SmolLM2-135M adapters for the ceo-report-qa example
with several recipes and asks the 30 held-out report questions through the app prompt (the
app's retrieval, persona and template; greedy, in-process transformers + PEFT), against the
base model with the same retrieval. Writes bench/results/adapter_facts.{json,md}.

    .venv/bin/python bench/adapter_facts.py [--variants base,qa,ctx,grounded ...] [--work DIR]

Each variant is a training config written next to the example's own train.yaml settings (its
data, the app of its `context:` section), so what is measured is what `hybrid train` does.
Training and generation run on one thread each (OMP_NUM_THREADS=1), which is slow but keeps
a shared 2-core machine usable; the figures of record are in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, markdown_table, write_results  # noqa: E402

EXAMPLE = REPO / "examples" / "ceo-report-qa"
QUESTIONS = EXAMPLE / "eval" / "questions.jsonl"
APP = EXAMPLE / "apps" / "northwind-ceo.yaml"
KB = "northwind-report"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# Gold figures of the labelled set, used when its lines carry no `answers` of their own.
GOLD_FALLBACK = [
    ["$412.6 million"], ["41.3%"], ["51%", "$46.2 million"], ["$34.8 million"], ["$1.27"],
    ["$138.9 million"], ["$52.3 million"], ["1,864"], ["$41.7 million"], ["$214.8 million"],
    ["$121.5 million", "9%"], ["$31.4 million"], ["$118.9 million"], ["Asia-Pacific"],
    ["Germany"], ["March 11, 2025"], ["12 kilograms"], ["99.2%"], ["31%"], ["$38 million"],
    ["8,740 tonnes"], ["72%"], ["4.8 megawatt"], ["2032"], ["0.62"], ["Birch and Hollis"],
    ["Daniel Whitcombe"], ["May 14, 2026"], ["$470 million"], ["$29.8 million"],
]  # fmt: skip

# Shared by every trained variant: short runs on the Q&A replies (max_length 384, batch 2).
COMMON = {
    "data": [str(EXAMPLE / "style" / "qa.jsonl")],
    "max_length": 384,
    "batch_size": 2,
    "gradient_accumulation": 1,
    "logging_steps": 10,
    "validation_share": 0.0,
    "seed": 42,
}
VARIANTS: dict[str, dict] = {
    "base": {},
    # today's `make demo` recipe: Q&A replies without context
    "qa-lr1e-3": {"train": {"max_length": 256, "max_steps": 30, "learning_rate": 1e-3}},
    # context-aware (RAFT) training as the example configured it before
    "ctx0.7-lr1e-3": {
        "train": {"max_steps": 40, "learning_rate": 1e-3},
        "context": {"share": 0.7},
    },
    # + grounded-voice examples (counterfactual, perturbed figures)
    "grounded-lr1e-3": {
        "train": {"max_steps": 40, "learning_rate": 1e-3},
        "context": {"share": 0.7, "grounded_examples": 120},
    },
    # grounded examples only carry the context; the Q&A replies stay without it (voice)
    "grounded240-ctx0-lr1e-3": {
        "train": {"max_steps": 40, "learning_rate": 1e-3},
        "context": {"share": 0.0, "grounded_examples": 240},
    },
    "grounded-lr2e-4": {
        "train": {"max_steps": 40, "learning_rate": 2e-4},
        "context": {"share": 0.7, "grounded_examples": 120},
    },
    "grounded-lr2e-4-60": {
        "train": {"max_steps": 60, "learning_rate": 2e-4},
        "context": {"share": 0.7, "grounded_examples": 120},
    },
}


def cases(part: str = "all") -> list[tuple[str, list[str]]]:
    """The single-turn answerable questions with their accepted answers (multi-turn and
    unanswerable cases test other parts: condensing and abstention)."""
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not r.get("messages") and r.get("answerable", True)]
    picked = [
        (row["question"], row.get("answers") or GOLD_FALLBACK[i]) for i, row in enumerate(rows)
    ]
    return picked if part == "all" else picked[{"even": 0, "odd": 1}[part] :: 2]


def correct(forms: list[str], answer: str) -> bool:
    try:  # the official scorer (hybrid eval app), when present
        from hybrid.evaluation.answers import answer_correct
    except ImportError:  # pragma: no cover - before it landed

        def answer_correct(forms, answer):
            digits = re.sub(r"[^\d.]", " ", answer).split()
            return any(
                all(n in digits for n in re.sub(r"[^\d.]", " ", f).split())
                if re.search(r"\d", f)
                else f.lower() in answer.lower()
                for f in forms
            )

    return answer_correct(forms, answer)


def hybrid_config(work: Path) -> Path:
    path = work / "hybrid.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "store": {"mode": "embedded", "path": str(work / "chroma")},
                "adapters": {"registry": str(work / "registry")},
            }
        )
    )
    return path


def hybrid(config: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "hybrid.cli", "--config", str(config), *args]
    result = subprocess.run(cmd, env=ENV, text=True, capture_output=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"`hybrid {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
    return result.stdout


def prepare(work: Path) -> tuple[Path, Path]:
    """(hybrid config, base model folder); the knowledge base ingested once."""
    config = hybrid_config(work)
    model = Path(hybrid(config, "model", "prepare").strip().splitlines()[-1])
    if KB not in hybrid(config, "kb", "list").split():
        hybrid(config, "kb", "create", KB)
        hybrid(config, "kb", "ingest", KB, str(EXAMPLE / "docs"))
    return config, model


def train(name: str, spec: dict, work: Path, config: Path, model: Path) -> dict:
    out = work / "adapters" / name
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    settings = {**COMMON, **spec["train"], "base_model": str(model), "output_dir": str(out)}
    if "context" in spec:
        settings["context"] = {
            "app": str(APP),
            "seed": 0,
            "holdout": [str(QUESTIONS)],
            **spec["context"],
        }
    path = work / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    started = time.monotonic()
    print(hybrid(config, "train", str(path), "--overwrite", "--quiet").strip(), flush=True)
    print(f"  trained {name} in {time.monotonic() - started:.0f} s", flush=True)
    return json.loads((out / "metrics.json").read_text())


def evaluate(
    name: str, work: Path, config: Path, model: Path, bind_figures: bool, part: str = "all"
) -> dict:
    import torch

    torch.set_num_threads(1)
    from hybrid.apps.app import App, open_pipeline
    from hybrid.apps.generators import LocalGenerator
    from hybrid.apps.spec import load_app_spec
    from hybrid.config import load_config
    from retrieval import KnowledgeBaseCatalog

    adapter = None if name == "base" else work / "adapters" / name
    spec = load_app_spec(APP)
    generation = spec.generation.model_copy(update={"bind_figures": bind_figures})
    spec = spec.model_copy(update={"generation": generation})
    catalog = KnowledgeBaseCatalog(load_config(config).store)
    app = App(spec, open_pipeline(spec, catalog), LocalGenerator(model, adapter))
    rows = []
    started = time.monotonic()
    for question, gold in cases(part):
        answer = app.chat(question, temperature=0, max_tokens=120)
        rows.append(
            {
                "question": question,
                "gold": gold,
                "answer": answer.text,
                "correct": correct(gold, answer.text),
                "cites": bool(answer.citations),
                "no_context": answer.notes.no_context,
            }
        )
        print(f"  [{name}] {'✓' if rows[-1]['correct'] else '✗'} {answer.text[:100]!r}", flush=True)
    answered = [r for r in rows if not r["no_context"]]
    return {
        "variant": name,
        "bind_figures": bind_figures,
        "correct": sum(r["correct"] for r in rows),
        "questions": len(rows),
        "cites": sum(r["cites"] for r in answered),
        "answered": len(answered),
        "eval_s": round(time.monotonic() - started),
        "rows": rows,
    }


def merged(work: Path) -> list[dict]:
    """One result per variant (and binding), its parts (even/odd questions) put together."""
    by_key: dict[str, dict] = {}
    for path in sorted(work.glob("*.json")):
        part = json.loads(path.read_text())
        if "variant" not in part:
            continue
        key = part["variant"] + ("+bound" if part.get("bind_figures") else "")
        entry = by_key.setdefault(key, {**part, "key": key, "rows": [], "eval_s": 0})
        seen = {r["question"] for r in entry["rows"]}
        entry["rows"] += [r for r in part["rows"] if r["question"] not in seen]
        entry["eval_s"] += part["eval_s"]
    for entry in by_key.values():
        rows = entry["rows"]
        answered = [r for r in rows if not r["no_context"]]
        entry.update(
            correct=sum(r["correct"] for r in rows),
            questions=len(rows),
            cites=sum(r["cites"] for r in answered),
            answered=len(answered),
        )
    order = {name: i for i, name in enumerate(VARIANTS)}
    return sorted(by_key.values(), key=lambda e: (order.get(e["variant"], 99), e["key"]))


def table(results: list[dict]) -> str:
    common = set.intersection(*({r["question"] for r in e["rows"]} for e in results))
    rows = []
    for r in results:
        m = (r.get("training") or {}).get("final", {})
        recipe = VARIANTS.get(r["variant"], {})
        on_common = [x for x in r["rows"] if x["question"] in common]
        rows.append(
            [
                r["key"],
                f"{sum(x['correct'] for x in on_common)}/{len(on_common)}",
                f"{r['correct']}/{r['questions']}",
                f"{r['cites']}/{r['answered']}",
                recipe.get("context", {}).get("share", "-") if "train" in recipe else "-",
                recipe.get("context", {}).get("grounded_examples", 0) if "train" in recipe else "-",
                recipe.get("train", {}).get("learning_rate", "-"),
                m.get("steps", "-"),
                f"{m['train_loss']:.3f}" if "train_loss" in m else "-",
                f"{m['runtime_s']:.0f}" if "runtime_s" in m else "-",
            ]
        )
    head = [
        "variant",
        f"correct (the {len(common)} questions all were asked)",
        "correct (all it was asked)",
        "cites a passage",
        "context share",
        "grounded examples",
        "lr",
        "steps",
        "train loss",
        "train s",
    ]
    return markdown_table(head, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=REPO / "artifacts" / "adapter_facts")
    parser.add_argument(
        "--bind-figures",
        action="store_true",
        help="keep the app's figure binding on (default off: what the adapter does by itself)",
    )
    parser.add_argument(
        "--part",
        choices=["all", "even", "odd"],
        default="all",
        help="every question, or every other one (to split a slow run in two)",
    )
    parser.add_argument("--stage", choices=["all", "train", "eval", "report"], default="all")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    config, model = prepare(work)
    suffix = "+bound" if args.bind_figures else ""
    for name in args.variants.split(","):
        spec = VARIANTS[name]
        if name != "base" and args.stage in ("all", "train"):
            train(name, spec, work, config, model)
        if args.stage in ("all", "eval"):
            result = evaluate(name, work, config, model, args.bind_figures, args.part)
            metrics_path = work / "adapters" / name / "metrics.json"
            if metrics_path.exists():
                result["training"] = json.loads(metrics_path.read_text())
            part = "" if args.part == "all" else f".{args.part}"
            (work / f"{name}{suffix}{part}.json").write_text(json.dumps(result, indent=2))
            print(f"{name}: {result['correct']}/{result['questions']} correct", flush=True)
    if args.stage in ("all", "report"):
        results = merged(work)
        payload = {"machine": machine(), "questions": str(QUESTIONS.relative_to(REPO))}
        payload["results"] = results
        payload["recipes"] = {n: VARIANTS[n] for n in VARIANTS}
        write_results("adapter_facts", payload, table(results))
        print(table(results))


if __name__ == "__main__":
    main()
