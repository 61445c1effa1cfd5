"""KPI cards: a trained format vs decoding constrained by a schema vs both.

    .venv/bin/python examples/report-kpi-cards/run.py --quick   # once: knowledge base + adapter
    .venv/bin/python -m bench.kpi_cards_bench                   # (--prepare runs it if needed)

Serves the example's work folder (`artifacts/report-kpi-cards/hybrid.yaml`, written by run.py)
with `hybrid serve` on a free port and asks the 23 held-out questions
(examples/report-kpi-cards/eval/questions.jsonl: metrics the adapter never saw) to `kpi-cards`
(format adapter) and `kpi-base` (no adapter), each without and with `response_format` of type
`json_schema` (vLLM's structured output, the card's schema), greedy, at most 200 tokens.
Scores each answer with examples/kpi_cards.py: the app's own schema verdict
(`hybrid.answer_schema`), value / unit / period / source page against the gold card, latency.
Writes bench/results/kpi_cards.{json,md} and the table into the example's README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import example_config, gateway, machine, write_results  # noqa: E402

EXAMPLE = REPO / "examples" / "report-kpi-cards"
MARK = re.compile(r"(<!-- bench:kpi_cards -->\n).*?(\n<!-- /bench:kpi_cards -->)", re.S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "artifacts" / "report-kpi-cards")
    parser.add_argument("--url", help="a gateway serving the example's apps already")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="questions in flight")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (embeddings)")
    parser.add_argument("--prepare", action="store_true", help="run run.py --quick if needed")
    parser.add_argument(
        "--from-run",
        action="store_true",
        help="store the measurement run.py made at its end (WORK/kpi_cards.json) instead of "
        "serving and asking again",
    )
    args = parser.parse_args(argv)

    import torch

    from examples.kpi_cards import measure

    torch.set_num_threads(args.threads)
    work = args.work_dir.resolve()
    config = None if args.url else example_config(EXAMPLE / "run.py", work, args.prepare)
    schema = json.loads((EXAMPLE / "kpi_card.schema.json").read_text(encoding="utf-8"))
    if args.from_run:
        stored = work / "kpi_cards.json"
        if not stored.is_file():
            raise SystemExit(f"{stored} not found: run examples/report-kpi-cards/run.py first")
        result = json.loads(stored.read_text(encoding="utf-8"))
        result["source"] = f"examples/report-kpi-cards/run.py: its last step ({stored})"
        return store(result, work, args, None)
    with gateway(config, args.url, work / "logs" / "kpi-bench-serve.log") as (url, ready_s):
        result = measure(
            url,
            ("kpi-cards", "kpi-base"),
            EXAMPLE / "eval" / "questions.jsonl",
            schema,
            max_tokens=args.max_tokens,
            concurrency=args.concurrency,
        )
    store(result, work, args, ready_s)


def store(result: dict, work: Path, args: argparse.Namespace, ready_s: float | None) -> None:
    """bench/results/kpi_cards.{json,md} and the table in the example's README."""
    from examples.kpi_cards import table

    manifest = work / "adapters" / "kpi-card-format" / "hybrid_adapter.json"
    payload = {
        "machine": machine(),
        "serve_ready_s": ready_s,
        "settings": {
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "concurrency": args.concurrency,
            "questions": "examples/report-kpi-cards/eval/questions.jsonl",
        },
        "adapter_manifest": json.loads(manifest.read_text()) if manifest.is_file() else None,
        **result,
    }
    text = table(result["cells"])
    path = write_results("kpi_cards", payload, "# KPI cards (bench/kpi_cards_bench.py)\n\n" + text)
    readme = EXAMPLE / "README.md"
    if readme.is_file() and MARK.search(readme.read_text(encoding="utf-8")):
        body = readme.read_text(encoding="utf-8")
        readme.write_text(MARK.sub(lambda m: m.group(1) + text + m.group(2), body), "utf-8")
    print(text)
    print(f"results in {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
