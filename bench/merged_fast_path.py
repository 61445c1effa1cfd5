"""Merged fast path benchmark: throughput through the gateway of (a) the base model, (b) an
adapter on the LoRA path, (c) the same adapter version on its merged engine, same load, in
one run, interleaved rounds.

    flock /tmp/hybrid-team/vllm.lock .venv/bin/python -m bench.merged_fast_path
    .venv/bin/python -m bench.merged_fast_path --adapter artifacts/ceo-final/adapters/ceo-voice
    .venv/bin/python -m bench.merged_fast_path --quick       # smoke run

Setup: SmolLM2-135M-Instruct (the embedded default, bf16) or `--model DIR`; the adapter is
`--adapter DIR` (default: a random rank-8 LoRA on every linear layer, the CEO example's shape).
It is registered twice, as `voice` (whose v1 gets a merged engine) and `voice-lora` (the same
files: its requests take the LoRA path). `voice@v1` is merged with `hybrid adapter merge`'s
library function and served by a second vLLM server under the served names the merge prints.
Both servers are `serving.engine.EngineProcess` with the same settings (1 GiB KV cache, LoRA
enabled, max_loras 1). One gateway process (`serving.runtime`, as `hybrid serve` builds it,
no keys) attaches to the LoRA server as a remote engine and to the merged one as
`merged_engines`; the bench checks that `/admin/adapters` says `voice@v1` is served by the
merged engine and that `voice-lora@v1` is loaded on the LoRA server.

Load: `--requests` non-streamed chat completions per target and round, `--concurrency` in
flight, temperature 0, `max_tokens` = `min_tokens` = `--tokens`. Each round runs the three
targets in a rotated order (so drifting machine load hits all of them); the table gives the
median round and the range. CPU seconds of each server during each target's runs are recorded
too, to show that the idle server does not take cores from the busy one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx

from bench.common import machine, markdown_table, write_results
from bench.serving_bench import (
    REPO,
    GatewayProcess,
    bodies_for,
    free_port,
    progress,
    run_load,
)

TARGETS = ("base", "lora", "merged")
ENGINE_KEYS_ENV = "HYBRID_BENCH_ENGINE_KEYS"
"""The two servers' keys for the gateway process, as JSON in its environment (not its argv)."""


def serve_gateway(spec: dict) -> None:
    """The gateway process (`--gateway-worker`): LoRA server as remote engine, merged engine."""
    import logging

    from serving.engine import MergedEngineConfig, RemoteEngineConfig
    from serving.gateway import GatewayConfig
    from serving.runtime import ServingRuntime, run_gateway

    logging.basicConfig(level=logging.WARNING)
    keys = json.loads(os.environ[ENGINE_KEYS_ENV])
    runtime = ServingRuntime(
        registry_root=Path(spec["registry"]),
        remote=RemoteEngineConfig(urls=(spec["lora_url"],), api_key=keys["lora"], timeout_s=120),
        base_model=Path(spec["model"]),
        gateway=GatewayConfig(port=spec["port"]),
        merged=[
            MergedEngineConfig(
                adapter="voice", version="v1", url=spec["merged_url"], api_key=keys["merged"]
            )
        ],
    )
    runtime.start()
    run_gateway(runtime.gateway_state())


class Gateway(GatewayProcess):
    def __init__(self, spec: dict, log_path: Path):
        self.url = f"http://127.0.0.1:{spec['port']}"
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.merged_fast_path",
                    "--gateway-worker",
                    json.dumps(spec),
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and its children (a vLLM server's group)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return total


async def measure(gateway: str, models: dict[str, str], engines: dict[str, int], args) -> dict:
    """Warm every target up, then `--rounds` rounds of the three targets in rotated order."""
    for target in TARGETS:  # first requests load the LoRA and touch every code path
        await run_load(gateway, bodies_for([models[target]], 4, args.tokens, False), 2)
    runs: dict[str, list[dict]] = {t: [] for t in TARGETS}
    for round_no in range(args.rounds):
        order = TARGETS[round_no % 3 :] + TARGETS[: round_no % 3]
        for target in order:
            bodies = bodies_for([models[target]], args.requests, args.tokens, False)
            before = {who: cpu_seconds(pid) for who, pid in engines.items()}
            run = await run_load(gateway, bodies, args.concurrency)
            summary = run.summary()
            summary["engine_cores_busy"] = {
                who: round((cpu_seconds(pid) - before[who]) / run.wall_s, 2)
                for who, pid in engines.items()
            }
            summary["served_models"] = sorted({s.model for s in run.samples if s.model})
            runs[target].append(summary)
            progress(
                f"round {round_no + 1} {target:6s}: {summary['tokens_per_s']:7.1f} tok/s "
                f"({summary['errors']} errors) engines busy {summary['engine_cores_busy']}"
            )
    return {
        target: {
            "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in rounds),
            "req_per_s_median": statistics.median(r["req_per_s"] for r in rounds),
            "rounds": rounds,
        }
        for target, rounds in runs.items()
    }


def table(results: dict, args) -> str:
    base = results["base"]["tokens_per_s_median"]
    rows = []
    for target, label in (
        ("base", "base model"),
        ("lora", "adapter, LoRA path"),
        ("merged", "adapter, merged engine"),
    ):
        r = results[target]
        spread = [x["tokens_per_s"] for x in r["rounds"]]
        rows.append(
            [
                label,
                r["tokens_per_s_median"],
                f"{min(spread)}-{max(spread)}",
                r["req_per_s_median"],
                round(statistics.median(x["latency"]["p50_ms"] for x in r["rounds"]), 1),
                round(r["tokens_per_s_median"] / base, 3),
                sum(x["errors"] for x in r["rounds"]),
            ]
        )
    head = (
        f"Merged fast path through the gateway ({args.tokens} tokens/request, concurrency "
        f"{args.concurrency}, {args.requests} requests per target and round, {args.rounds} "
        "interleaved rounds):\n\n"
    )
    return head + markdown_table(
        [
            "target",
            "tok/s median",
            "tok/s rounds",
            "req/s median",
            "p50 ms",
            "vs base",
            "errors",
        ],
        rows,
    )


def prepare(root: Path, args):
    """The base model, the adapter (registered as voice and voice-lora), the merged model."""
    import torch

    from finetune.base_models import DEFAULT_BASE_MODEL, resolve_base_model
    from hybrid.adapters import merge
    from serving.adapters import AdapterRegistry, describe_base
    from serving.adapters.files import adapter_digest

    torch.set_num_threads(2)
    model_dir = resolve_base_model(args.model or DEFAULT_BASE_MODEL)
    if args.adapter:
        adapter = Path(args.adapter).resolve()
    else:
        from tests.helpers.adapters import random_lora

        linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        adapter = random_lora(model_dir, root / "adapter", rank=8, seed=7, targets=linear)
    registry = AdapterRegistry(root / "registry", describe_base(model_dir), max_rank=16)
    for name in ("voice", "voice-lora"):
        registry.register(adapter, name, "v1")
    merged = merge(registry.resolve("voice@v1").adapter.path, root / "merged")
    assert adapter_digest(adapter) == merged.digest
    return model_dir, adapter, merged


def engine_config(model: Path, names: list[str], log: Path):
    from serving.engine import EngineConfig, RestartPolicy

    return EngineConfig(
        model=str(model),
        served_model_name=names[0],
        served_model_aliases=tuple(names[1:]),
        max_loras=1,
        max_lora_rank=16,
        max_model_len=512,
        kv_cache_gib=1,
        log_file=log,
        startup_timeout_s=600,
        restart=RestartPolicy(max_restarts=0),  # a crash must fail the bench, not hide in it
    )


def check_paths(gateway: str, lora_url: str) -> dict:
    """What /admin/adapters says serves each adapter after the warm-up."""
    rows = httpx.get(gateway + "/admin/adapters", timeout=30).json()["adapters"]
    paths = {r["id"]: {"served_via": r["served_via"], "loaded_on": r["loaded_on"]} for r in rows}
    if paths["voice@v1"]["served_via"] != "merged" or paths["voice-lora@v1"]["loaded_on"] != [
        lora_url
    ]:
        raise RuntimeError(f"the targets did not take the paths under test: {paths}")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="base model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--adapter", help="adapter folder (default: a random rank-8 LoRA)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--requests", type=int, default=24, help="requests per target and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="16 tokens, 8 requests, 1 round")
    parser.add_argument("--gateway-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gateway_worker:
        serve_gateway(json.loads(args.gateway_worker))
        return
    if args.quick:
        args.tokens, args.requests, args.rounds = 16, 8, 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop vLLM on `kill` too

    from serving.engine import EngineProcess

    root = Path(tempfile.mkdtemp(prefix="hybrid-merged-bench-"))
    started = time.perf_counter()
    model_dir, adapter, merged = prepare(root, args)
    progress(f"merged {adapter} into {model_dir.name} in {time.perf_counter() - started:.0f} s")
    served = model_dir.name
    engines = {
        "lora": EngineProcess(engine_config(model_dir, [served], root / "lora-vllm.log")),
        "merged": EngineProcess(
            engine_config(merged.path, merged.served_names(), root / "merged-vllm.log")
        ),
    }
    gateway: Gateway | None = None
    results = None
    load_start = os.getloadavg()
    try:
        for name, engine in engines.items():  # one at a time: two boots at once on 2 cores crawl
            engine.start()
            progress(f"{name} vLLM ready after {engine.last_ready_s:.1f} s at {engine.url}")
        os.environ[ENGINE_KEYS_ENV] = json.dumps({n: e.api_key for n, e in engines.items()})
        spec = {
            "registry": str(root / "registry"),
            "lora_url": engines["lora"].url,
            "merged_url": engines["merged"].url,
            "model": str(model_dir),
            "port": free_port(),
        }
        gateway = Gateway(spec, root / "gateway.log")
        gateway.wait_ready()
        models = {"base": served, "lora": "voice-lora", "merged": "voice"}
        pids = {name: engine.pid for name, engine in engines.items()}
        results = asyncio.run(measure(gateway.url, models, pids, args))
        paths = check_paths(gateway.url, engines["lora"].url)
    finally:
        if gateway is not None:
            gateway.stop()
        for engine in engines.values():
            engine.stop()
        if results is None:
            progress(f"failed; the logs are kept in {root}")
    shutil.rmtree(root, ignore_errors=True)

    text = table(results, args)
    lora, fast = results["lora"]["tokens_per_s_median"], results["merged"]["tokens_per_s_median"]
    text += (
        f"\n\nmerged / LoRA path: {fast / lora:.3f}. One run on the "
        f"{os.cpu_count()}-core test box (load average at start {load_start[0]:.2f})."
    )
    write_results(
        "merged_fast_path",
        {
            "machine": machine(),
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "args": {k: v for k, v in vars(args).items() if k != "gateway_worker"},
            "model": str(model_dir),
            "adapter": str(adapter) if args.adapter else "random rank-8 LoRA, all linear layers",
            "served_names": merged.served_names(),
            "engine": engine_config(model_dir, [served], Path("x")).model_dump(
                mode="json", exclude={"log_file", "env", "model"}
            ),
            "vllm_ready_s": {n: round(e.last_ready_s or 0, 1) for n, e in engines.items()},
            "paths": paths,
            "results": results,
        },
        text,
    )
    print(text)


if __name__ == "__main__":
    main()
