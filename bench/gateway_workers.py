"""Gateway throughput with 1 and 2 worker processes (`hybrid serve --workers N`), over an
instant engine, for base-model and app requests (not streamed), and the cores the gateway's
processes used meanwhile.

    python -m bench.gateway_workers          # about 3 minutes; under flock /tmp/hybrid-team/vllm.lock here

Setup: the same as bench/gateway_cost.py (whose parts this reuses): the fast tests' instant
engine (tests/serving/fake_engine.py) in a process of its own, a user's work folder with an app
(a knowledge base of three short guides, MiniLM embeddings in embedded Chroma, hybrid search)
over a LoRA adapter, `hybrid serve --workers N` as a user starts it (one OpenMP thread per
worker) on N cores (`taskset -c 0..N-1`: 1 -> 2 workers is 1 -> 2 cores),
and this process as the load generator (aiohttp, `--concurrency` in flight). The engine stub and
the load generator are not pinned: on a 2-core machine they take their share of the two
workers' cores. Unpinned, one worker already uses ~1.5 cores for app requests (the embedder,
Chroma's search threads and the event loop run side by side), which would leave a second
worker half a core on 2 CPUs. Pinning worker i to core i instead leaves one core idle: the
load generator's keep-alive connections are handed out once, and the kernel gave most of them
to one worker (1.0x in one run).

What limits the rate differs by kind. A base request costs the gateway well under a millisecond,
about what it costs the load generator and the engine stub to make and answer it, so on a
2-core machine a second worker has no core of its own and the base rows show the machine, not
the gateway (the `cores the gateway used` column says so). An app request costs the gateway
~20 ms of retrieval (the question's embedding, the vector and keyword search), so there the
gateway is the limit and the 1 -> 2 worker ratio is the gateway's scaling. The issue's target
is >= 1.7x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import machine, markdown_table, write_results
from bench.gateway_cost import (
    APP,
    BASE,
    REPO,
    CpuMeter,
    free_port,
    prepare,
    process,
    progress,
    throughput,
)

WORKERS = (1, 2)
KINDS = {"base": BASE, "app": APP}
TARGET = 1.7


def measure(workers: int, config: Path, model: str, work: Path, args) -> dict:
    """Requests/s of `model` through `hybrid serve --workers N` (median of `args.rounds` runs of
    `args.seconds`), and the cores its processes kept busy meanwhile."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cores = ",".join(str(core) for core in range(workers))  # a core per worker
    command = ["taskset", "-c", cores, sys.executable, "-m", "hybrid.cli"]
    command += ["--config", str(config), "serve"]
    command += ["--port", str(port), "--workers", str(workers)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = work / f"gateway-{workers}.log"
    runs = []
    with process(command, log, url + "/ready", env) as proc:
        meter = CpuMeter(proc.pid)
        for _ in range(args.rounds):
            done, wall, used, errors = asyncio.run(
                throughput(url, model, False, args.concurrency, args.seconds, meter)
            )
            if errors:
                progress(f"WARNING: {len(errors)} failed requests, e.g. {errors[0]}")
            runs.append({"req_per_s": done / wall, "cores": used / wall})
    runs.sort(key=lambda r: r["req_per_s"])
    middle = runs[len(runs) // 2]
    return {
        "req_per_s": round(middle["req_per_s"], 1),
        "gateway_cores_busy": round(middle["cores"], 2),
        "rounds_req_per_s": [round(r["req_per_s"], 1) for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--seconds", type=float, default=10.0, help="each throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per measurement")
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
    work = Path(tempfile.mkdtemp(prefix="hybrid-gateway-workers-"))
    stub_port = free_port()
    stub = f"http://127.0.0.1:{stub_port}"
    stub_command = [sys.executable, "-m", "bench.gateway_cost", "--stub-worker", str(stub_port)]
    results: dict = {kind: {} for kind in KINDS}
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(process(stub_command, work / "stub.log", stub + "/health"))
            config = prepare(work, stub)
            progress("engine stub and work folder ready")
            for kind, model in KINDS.items():
                for workers in WORKERS:
                    results[kind][workers] = measure(workers, config, model, work, args)
                    progress(f"{kind}, {workers} worker(s): {results[kind][workers]}")
    except BaseException:
        progress(f"failed; the logs are kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)
    scaling = {
        kind: round(by[WORKERS[1]]["req_per_s"] / by[WORKERS[0]]["req_per_s"], 2)
        for kind, by in results.items()
    }
    rows = [
        [kind, workers, f"{m['req_per_s']:.0f}", m["gateway_cores_busy"], ""]
        for kind, by in results.items()
        for workers, m in by.items()
    ]
    for row in rows:
        if row[1] == WORKERS[1]:
            row[4] = f"{scaling[row[0]]}x"
    cpus = machine()["cpus"]
    text = markdown_table(
        [
            "requests",
            "gateway workers",
            "requests/s (non-streamed)",
            "cores the gateway used",
            "1 -> 2 workers",
        ],
        rows,
    )
    text += (
        f"\n\nOn {cpus} CPUs, {args.concurrency} requests in flight, median of {args.rounds} "
        f"runs of {args.seconds:.0f} s, the gateway on one core per worker; target: >= "
        f"{TARGET}x from 1 to 2 workers. Cores the "
        "gateway used: CPU seconds of the `hybrid serve` processes per second; where 2 workers "
        "use well under 2 cores the gateway was not the limit (the load generator and the engine "
        "stub share the same CPUs). An app request includes its retrieval in the gateway, so "
        "app requests keep the gateway the limit."
    )
    payload = {
        "machine": machine(),
        "args": vars(args),
        "results": results,
        "scaling": scaling,
        "target": TARGET,
        "source": str(REPO),
    }
    write_results("gateway_workers", payload, text)
    print(text)


if __name__ == "__main__":
    main()
