"""App evaluation of the CEO report example: the labelled set through northwind-ceo (adapter +
retrieval) and northwind-base (retrieval only), served as a user serves them.

    .venv/bin/python examples/ceo-report-qa/run.py --quick     # once: knowledge base + adapter
    .venv/bin/python -m bench.app_eval            # (--prepare runs the line above if needed)

It reads the example's work folder (`artifacts/ceo-report-qa/hybrid.yaml`, written by run.py:
knowledge base, registered ceo-voice adapter), starts `hybrid serve` with it on a free port
(vLLM + gateway; or asks `--url` if one runs already) and runs `hybrid eval app`'s library on
examples/ceo-report-qa/eval/questions.jsonl, greedy, with the voice model fitted on the
adapter's style data (train.yaml) against the cached base replies
(examples/ceo-report-qa/eval/base_replies.jsonl, made by bench/style_baseline.py). Writes
bench/results/app_eval_ceo-report-qa.{json,md}; the report folder (chart, blind A/B sheet
and key) goes to artifacts/ceo-report-qa/app-eval/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import machine, write_results  # noqa: E402

EXAMPLE = REPO / "examples" / "ceo-report-qa"
APPS = ("northwind-ceo", "northwind-base")
HYBRID = [sys.executable, "-m", "hybrid.cli"]


def serve(config: Path, log: Path) -> tuple[subprocess.Popen, str]:
    from examples.runner import free_port, wait_ready

    port = free_port()
    proc = subprocess.Popen(
        [*HYBRID, "serve", str(config), "--port", str(port)],
        stdout=open(log, "wb"),  # noqa: SIM115 - closed when the process ends
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "artifacts" / "ceo-report-qa")
    parser.add_argument("--url", help="a gateway serving both apps already (skip hybrid serve)")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (embeddings)")
    parser.add_argument("--concurrency", type=int, default=4, help="questions in flight")
    parser.add_argument(
        "--sampling",
        default="{}",
        help="JSON of sampling values over the apps' own, e.g. '{\"repetition_penalty\": 1.0}'",
    )
    parser.add_argument(
        "--name", default="app_eval_ceo-report-qa", help="results file name in bench/results/"
    )
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="run examples/ceo-report-qa/run.py --quick first when its work folder is missing",
    )
    args = parser.parse_args(argv)

    import torch

    from hybrid.evaluation.report import markdown
    from hybrid.evaluation.responders import GatewayResponder
    from hybrid.evaluation.runner import AppEvalSettings, evaluate_apps

    torch.set_num_threads(args.threads)
    work = args.work_dir.resolve()
    config = work / "hybrid.yaml"
    if args.url is None and not config.is_file() and args.prepare:
        run_py = EXAMPLE / "run.py"
        subprocess.run(
            [sys.executable, str(run_py), "--quick", "--work-dir", str(work)], check=True
        )
    if args.url is None and not config.is_file():
        raise SystemExit(
            f"{config} not found: run `.venv/bin/python examples/ceo-report-qa/run.py --quick` "
            "first (it builds the knowledge base and trains and registers the ceo-voice adapter)"
        )
    settings = AppEvalSettings(
        apps=APPS,
        questions=EXAMPLE / "eval" / "questions.jsonl",
        output_dir=work / "app-eval",
        sampling={"temperature": 0, "max_tokens": args.max_tokens, **json.loads(args.sampling)},
        style=(EXAMPLE / "train.yaml",),
        style_baseline=EXAMPLE / "eval" / "base_replies.jsonl",
        concurrency=args.concurrency,
    )
    proc = None
    url = args.url
    ready_s = None
    if url is None:
        (work / "logs").mkdir(parents=True, exist_ok=True)
        print("starting hybrid serve (vLLM + gateway, about a minute) ...", flush=True)
        started = time.monotonic()
        proc, url = serve(config, work / "logs" / "app-eval-serve.log")
        ready_s = round(time.monotonic() - started, 1)
    try:
        report = evaluate_apps(settings, GatewayResponder(url))
    finally:
        if proc is not None:
            stop(proc)
    payload = {"machine": machine(), "serve_ready_s": ready_s, **report}
    full = markdown(report)
    # The README shows the side-by-side summary; the questions one by one stay in the .md.
    summary = full.split("\n## Voice model")[0].split("\n", 1)[1].strip()
    path = write_results(args.name, payload, full, readme=summary.replace(f"{REPO}/", ""))
    print(report["summary_line"])
    print(f"results in {path} and {path.with_suffix('.md')}; A/B sheet in {settings.output_dir}")


if __name__ == "__main__":
    main()
