"""Run an example end to end, the way a user would with the `hybrid` CLI: build the knowledge
bases, train the style adapters, register them, serve everything with `hybrid serve`, and ask
questions through the official `openai` client, each answer beside the base model's.

Each example's `run.py` describes its parts as a `Demo` and calls `run(demo)`. Everything it
writes goes under `artifacts/<example>/` (git-ignored); a second run reuses what is there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
HYBRID = [sys.executable, "-m", "hybrid.cli"]


QUICK_STEPS = {
    "max_steps": 40,
    "batch_size": 2,
    "gradient_accumulation": 1,
    "logging_steps": 10,
    "validation_share": 0.0,
}
"""What every example's quick run (`make demo`) trains: 40 steps of 2 examples, no validation
split. Each example adds its learning rate and sequence length (`Demo.quick_train`)."""

EVAL_MAX_TOKENS = 120
"""max_tokens of the answers `hybrid eval app` scores at the end (`Demo.evaluations`)."""


@dataclass(frozen=True)
class Adapter:
    name: str
    train_config: Path
    strength: float = 1.0
    """Registered at this strength (`hybrid adapter scale`: lora_alpha x strength); 1 = as
    trained."""


@dataclass(frozen=True)
class Question:
    text: str
    apps: tuple[str, ...]
    """The apps that answer it, shown side by side (e.g. the adapter's app and the base's)."""


@dataclass(frozen=True)
class Evaluation:
    """The labelled set the demo scores its apps on at the end (`hybrid eval app`)."""

    questions: Path
    apps: tuple[str, ...]
    """The app under test first, then the one it is compared against."""
    style: Path
    """The adapter's training config: its data are the voice model's positives."""
    style_baseline: Path
    """Base-model replies to the style prompts: the voice model's negatives."""
    only: dict[str, str] = field(default_factory=dict)
    """Keep the labelled cases whose field has this value (e.g. {"brand": "brewbird"})."""


@dataclass(frozen=True)
class Demo:
    name: str
    folder: Path
    knowledge_bases: dict[str, list[Path]]
    adapters: list[Adapter]
    apps: list[Path]
    questions: list[Question]
    evaluations: tuple[Evaluation, ...] = ()
    """Scored at the end, each through the running gateway (`hybrid eval app`)."""
    checks: tuple[Callable[[str, Path, int | None], None], ...] = ()
    """Run at the very end with the gateway's URL, the work folder and the run's `--max-tokens`
    (None: the check's own) (a measurement of the example's own, e.g. the KPI cards'
    schema-valid rate)."""
    answer_tokens: int = 120
    """max_tokens of the questions shown side by side."""
    quick_train: dict = field(default_factory=dict)
    """Training settings of the quick run (`make demo`) over the training config's own: on a
    2-core CPU a SmolLM2 training step costs about 10 s per 1,000 tokens, so the quick run
    trains a few dozen short steps (the config's `context:` section still applies)."""


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def hybrid(config: Path, *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [*HYBRID, "--config", str(config), *args],
        text=True,
        capture_output=capture,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    if result.returncode != 0:
        detail = result.stderr if capture else ""
        raise SystemExit(f"`hybrid {' '.join(args)}` failed (exit {result.returncode}) {detail}")
    return result.stdout if capture else ""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(demo: Demo, work: Path, model: str, port: int) -> Path:
    config = {
        "store": {"mode": "embedded", "path": str(work / "chroma")},
        "adapters": {"registry": str(work / "registry")},
        "engine": {
            "model": model,
            "max_model_len": 2048,
            "max_lora_rank": 16,
            "max_loras": 2,
            "kv_cache_gib": 1,
            "log_file": str(work / "logs" / "vllm.log"),
        },
        "gateway": {"host": "127.0.0.1", "port": port},
        "apps": [str(demo.folder / app) for app in demo.apps],
    }
    path = work / "hybrid.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train_and_register(
    demo: Demo, config: Path, work: Path, model: str, quick: bool, fresh: bool
) -> None:
    names = set()
    if not fresh:  # a fresh work folder has no registry to ask
        registered = hybrid(config, "adapter", "list", "--offline", "--json", capture=True)
        names = {row["name"] for row in yaml.safe_load(registered) or []}
    for adapter in demo.adapters:
        if adapter.name in names:
            print(f"adapter {adapter.name} is registered already (delete {work} to retrain)")
            continue
        out = work / "adapters" / adapter.name
        args = ["train", str(demo.folder / adapter.train_config), "--overwrite"]
        args += ["--output-dir", str(out), "--base-model", model]
        if quick:
            args += [f"--set={key}={value}" for key, value in demo.quick_train.items()]
        step(f"training the {adapter.name} adapter (loss per step below)")
        hybrid(config, *args)
        if adapter.strength != 1.0:
            scaled = out.with_name(f"{out.name}-x{adapter.strength:g}")
            shutil.rmtree(scaled, ignore_errors=True)
            hybrid(
                config,
                "adapter",
                "scale",
                str(out),
                f"--factor={adapter.strength}",
                f"--out={scaled}",
            )
            out = scaled
        hybrid(config, "adapter", "register", str(out), "--name", adapter.name, "--offline")


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 600) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"hybrid serve stopped:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                print(f"ready after {time.monotonic() - started:.0f} s")
                return
        except httpx.TransportError:
            pass
        print(".", end="", flush=True)
        time.sleep(2)
    raise SystemExit(f"hybrid serve not ready after {timeout_s:.0f} s; log: {log}")


@contextmanager
def served(config: Path, log: Path, port: int | None = None) -> Iterator[str]:
    """`hybrid serve CONFIG` on `port` (default: a free one), its output in `log`, for the
    block; yields its URL once /ready answers. Stopped with SIGINT (it drains, then stops vLLM),
    its process group killed if it has not exited after 60 s."""
    port = port or free_port()
    proc = subprocess.Popen(
        [*HYBRID, "serve", str(config), "--port", str(port)],
        stdout=open(log, "wb"),  # noqa: SIM115 - closed when the process ends
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, log)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def show(question: Question, answers: dict[str, object]) -> None:
    width = 100
    print("\n" + "=" * width)
    print(textwrap.fill(f"Q: {question.text}", width))
    for app, answer in answers.items():
        notes = answer.model_extra.get("hybrid", {})
        print("-" * width)
        print(f"[{app}] (served by {notes.get('served_by', 'a fixed no-context answer')})")
        print(textwrap.fill(answer.choices[0].message.content.strip(), width))
        cited = notes.get("citations") or []
        label = "cites" if cited else "was given"
        for c in cited or notes.get("sources", []):
            page = f" p.{c['page']}" if c.get("page") else ""
            snippet = " ".join(c["snippet"].split())[:60]
            print(f"    {label} [{c['index']}] {c['file_name']}{page}: {snippet}...")
        for claim in notes.get("grounding", {}).get("ungrounded", []):
            print(f"    flagged: {claim.get('reason') or claim['text'] + ' is in no source'}")


def ask(url: str, demo: Demo, max_tokens: int) -> None:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    models = [m.id for m in client.models.list().data]
    print(f"models served: {', '.join(models)}")
    for question in demo.questions:
        answers = {
            app: client.chat.completions.create(
                model=app,
                messages=[{"role": "user", "content": question.text}],
                temperature=0,
                max_tokens=max_tokens,
            )
            for app in question.apps
        }
        show(question, answers)


def evaluate(
    config: Path, url: str, demo: Demo, spec: Evaluation, work: Path, max_tokens: int
) -> None:
    """Score the apps on the labelled set through the running gateway and print the report's
    summary line (correctness, voice, abstention per app)."""
    first, *others = spec.apps
    step(f"scoring {', '.join(spec.apps)} on the labelled set ({spec.questions.name})")
    args = ["eval", "app", first, str(demo.folder / spec.questions), "--url", url]
    args += [arg for other in others for arg in ("--against", other)]
    args += [f"--only={key}={value}" for key, value in spec.only.items()]
    args += ["--style", str(demo.folder / spec.style)]
    args += ["--style-baseline", str(demo.folder / spec.style_baseline)]
    args += ["--out", str(work / "eval" / first), "--max-tokens", str(max_tokens)]
    args += ["--concurrency", "4", "--quiet"]
    print(hybrid(config, *args, capture=True).strip())


def run(demo: Demo, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"Run the {demo.name} example end to end.")
    parser.add_argument("--quick", action="store_true", help="short training (make demo)")
    parser.add_argument(
        "--model",
        default=os.environ.get("MODEL") or "SmolLM2-135M-Instruct",
        help="base model: a folder, or the embedded default (env MODEL)",
    )
    parser.add_argument("--work-dir", type=Path, default=REPO / "artifacts" / demo.name)
    parser.add_argument(
        "--max-tokens",
        type=int,
        help="max_tokens of every answer the run asks for: the questions shown, the scoring "
        "and the example's own checks (default: the example's own; a smaller value makes a "
        "smoke run on a model that never stops, e.g. random weights, shorter)",
    )
    args = parser.parse_args(argv)
    if args.max_tokens is not None and args.max_tokens < 1:
        parser.error(f"--max-tokens {args.max_tokens}: give at least 1")
    started = time.monotonic()
    work = args.work_dir.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    port = free_port()
    fresh = not (work / "hybrid.yaml").exists()  # nothing built yet: no need to ask what is
    config = write_config(demo, work, args.model, port)

    step(f"base model {args.model}")
    if Path(args.model).expanduser().is_dir():
        print("a model folder: nothing to prepare")
    else:  # a packaged model: converted once into the cache
        print(hybrid(config, "model", "prepare", args.model, capture=True).strip())
    for kb, sources in demo.knowledge_bases.items():
        step(f"knowledge base {kb}")
        if fresh or kb not in hybrid(config, "kb", "list", capture=True).split():
            hybrid(config, "kb", "create", kb)
        hybrid(config, "kb", "ingest", kb, *[str(demo.folder / s) for s in sources])
    train_and_register(demo, config, work, args.model, args.quick, fresh)

    step("serving: vLLM with the adapters behind the gateway (about a minute to start)")
    with served(config, work / "logs" / "serve.log", port) as url:
        step("asking through the official openai client: the app (adapter) beside the base")
        ask(url, demo, args.max_tokens or demo.answer_tokens)
        for spec in demo.evaluations:
            evaluate(config, url, demo, spec, work, args.max_tokens or EVAL_MAX_TOKENS)
        for check in demo.checks:
            check(url, work, args.max_tokens)
    print(f"\ndone in {time.monotonic() - started:.0f} s; artifacts in {work}")
