"""Query-embedding latency by torch thread count, alone and beside a busy neighbour process.

    .venv/bin/python -m bench.embed_threads      # about a minute

For each thread count (1, 2, and torch's default), all-MiniLM-L6-v2 embeds the same short
questions one at a time (as a query does) and a batch of 32 report paragraphs (as ingestion
does), first with no neighbour of ours, then while a neighbour process spins a busy loop pinned
to core 0 (`taskset -c 0`). Figures: p50/p95 ms per query embedding, paragraphs/s per batch.
The machine is shared, so "alone" means no neighbour of ours; the load average is recorded.
Writes bench/results/embed_threads.{json,md} and the README block; `EmbedderConfig.threads`
defaults to the count chosen here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.common import machine, markdown_table, percentile, write_results
from retrieval.config import EmbedderConfig
from retrieval.embedders import load_embedder

QUESTIONS = [
    "What was the effective tax rate?",
    "How many apprentices graduated during the year?",
    "What share of revenue came from Asia-Pacific?",
    "How long does the warranty cover motors?",
    "What does error code E4 mean?",
]
PARAGRAPH = (
    "Cash generated from operating activities was $61.1 million. Capital expenditures were "
    "$19.4 million, of which $12.5 million related to the Brno plant and most of the rest to "
    "test equipment and tooling in Grand Rapids."
)
REPEATS = 60


def busy_neighbour() -> subprocess.Popen:
    command = [sys.executable, "-c", "while True: pass"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    return subprocess.Popen(command)


def measure(model, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    for q in QUESTIONS:  # warm up at this thread count
        model.get_query_embedding(q)
    seconds = []
    for i in range(REPEATS):
        start = time.perf_counter()
        model.get_query_embedding(QUESTIONS[i % len(QUESTIONS)])
        seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    model.get_text_embedding_batch([PARAGRAPH] * 32)
    batch = time.perf_counter() - start
    return {
        "query_p50_ms": round(percentile(seconds, 0.50) * 1000, 1),
        "query_p95_ms": round(percentile(seconds, 0.95) * 1000, 1),
        "batch_paragraphs_per_s": round(32 / batch, 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def run() -> dict:
    import torch

    default = torch.get_num_threads()
    model = load_embedder(EmbedderConfig(threads=0)).model
    rows = []
    for threads in sorted({1, 2, default}):
        alone = measure(model, threads)
        neighbour = busy_neighbour()
        try:
            time.sleep(0.5)
            busy = measure(model, threads)
        finally:
            neighbour.kill()
            neighbour.wait()
        rows.append({"threads": threads, "torch_default": threads == default, "alone": alone,
                     "busy_neighbour": busy})  # fmt: skip
    return {"machine": machine(), "cpus": os.cpu_count(), "repeats": REPEATS, "rows": rows}


def table(payload: dict) -> str:
    body = []
    for r in payload["rows"]:
        name = f"{r['threads']}" + (" (torch default)" if r["torch_default"] else "")
        a, b = r["alone"], r["busy_neighbour"]
        body.append(
            [
                name,
                a["query_p50_ms"],
                a["query_p95_ms"],
                b["query_p50_ms"],
                b["query_p95_ms"],
                a["batch_paragraphs_per_s"],
                b["batch_paragraphs_per_s"],
            ]
        )
    headers = ["torch threads", "query p50 ms alone", "p95 alone", "query p50 ms busy neighbour"]
    headers += ["p95 busy", "batch paragraphs/s alone", "batch paragraphs/s busy"]
    return (
        f"all-MiniLM-L6-v2 on {payload['cpus']} CPUs (shared machine); busy neighbour = a "
        "Python busy loop pinned to core 0.\n\n" + markdown_table(headers, body)
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    payload = run()
    text = table(payload)
    write_results("embed_threads", payload, text)
    print(text)


if __name__ == "__main__":
    main()
