"""Helpers shared by the benchmarks: timing, percentiles, JSON + markdown table output, and the
work folder in which a bench runs Hybrid apart from the example it measures."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
README = REPO / "README.md"
HYBRID = [sys.executable, "-m", "hybrid.cli"]


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


PAIRED_HEADERS = ["right only with / only without the adapter", "voice, adapter - base (95% CI)"]
"""The headers of `paired_cells`' two cells."""


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


RECIPE_HEADER = "adapter recipe (SmolLM2-135M, LoRA r8, batch 2)"
"""The first column of the recipe benches' tables: every recipe there trains that."""


def recipe_runs(folder: Path) -> Iterator[tuple[dict, Path, dict]]:
    """Each stored run of a recipe bench (`folder`/*.json, by file name): the run, its recipe
    file and its first app comparison."""
    for path in sorted(folder.glob("*.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        yield run, REPO / run["recipe"]["file"], run["comparisons"][0]


def publish_table(name: str, text: str) -> None:
    """A bench's table as bench/results/NAME.md and in the README's block; printed."""
    (RESULTS / f"{name}.md").write_text(text + "\n", encoding="utf-8")
    update_readme(name, text)
    print(text)


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


def example_config(run_py: Path, work: Path, prepare: bool = False) -> Path:
    """`work`/hybrid.yaml, the serving config an example's run.py writes (with its knowledge
    bases built and adapters registered); with `prepare`, `run.py --quick` makes it first when
    it is missing.

    Raises:
        SystemExit: it is missing, naming the command that makes it.
    """
    config = work / "hybrid.yaml"
    if not config.is_file() and prepare:
        subprocess.run(
            [sys.executable, str(run_py), "--quick", "--work-dir", str(work)], check=True
        )
    if not config.is_file():
        raise SystemExit(
            f"{config} not found: run `.venv/bin/python {run_py.relative_to(REPO)} --quick` "
            "first (it builds the knowledge bases and trains and registers the adapters)"
        )
    return config


@contextmanager
def gateway(config: Path | None, url: str | None, log: Path) -> Iterator[tuple[str, float | None]]:
    """A gateway for the block: `url` as given, or `hybrid serve CONFIG` on a free port
    (stopped at the end); its URL and the seconds it took to be ready (None for a given URL)."""
    if url is not None:
        yield url, None
        return
    from examples.runner import served

    log.parent.mkdir(parents=True, exist_ok=True)
    print("starting hybrid serve (vLLM + gateway, about a minute) ...", flush=True)
    started = time.monotonic()
    with served(config, log) as served_url:
        yield served_url, round(time.monotonic() - started, 1)


@dataclass(frozen=True)
class WorkFolder:
    """A bench run's own folder (see `isolated_work_folder`) and the commands run in it."""

    path: Path
    env: dict[str, str]

    def hybrid(self, *args: str) -> None:
        """`hybrid --config WORK/hybrid.yaml ARGS...`; raises when it fails."""
        config = ["--config", str(self.path / "hybrid.yaml")]
        subprocess.run([*HYBRID, *config, *args], check=True, env=self.env)

    def register(self, adapter: Path, name: str) -> None:
        """Register `adapter` as `name` in the folder's own registry (no server needed)."""
        self.hybrid("adapter", "register", str(adapter), "--name", name, "--offline")

    def score(self, name: str, *options: str) -> None:
        """bench/app_eval.py on this folder: serves its apps, stores bench/results/NAME.json."""
        command = [sys.executable, "-m", "bench.app_eval", "--work-dir", str(self.path)]
        subprocess.run([*command, "--name", name, *options], check=True, env=self.env, cwd=REPO)


def isolated_work_folder(
    folder: Path,
    example: Path,
    *,
    threads: int | None = None,
    own_store: bool = False,
    engine_model: str | None = None,
) -> WorkFolder:
    """`folder` made ready to serve an example's apps apart from the example's own work folder
    `example` (written by its run.py): a hybrid.yaml that is the example's with an empty
    adapter registry and a vLLM log of its own, `engine_model` as the served base model if
    given, and with `own_store` its own copy of the knowledge bases (copied once, so runs that
    write to them cannot change the example's). Subprocesses get HF_HUB_OFFLINE=1 and, with
    `threads`, that many OpenMP threads."""
    shutil.rmtree(folder / "registry", ignore_errors=True)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((example / "hybrid.yaml").read_text(encoding="utf-8"))
    if own_store:
        if not (folder / "chroma").is_dir():
            shutil.copytree(example / "chroma", folder / "chroma")
        config["store"]["path"] = str(folder / "chroma")
    if engine_model is not None:
        config["engine"]["model"] = engine_model
    config["adapters"]["registry"] = str(folder / "registry")
    config["engine"]["log_file"] = str(folder / "logs" / "vllm.log")
    (folder / "hybrid.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return WorkFolder(folder, env)
