"""Serving benchmark: what the gateway adds on top of vLLM, what serving several LoRA adapters at
once costs, and how long an adapter hot swap takes, against one real vLLM server, in one run.

    .venv/bin/python -m bench.serving_bench            # tiny model (about 4 minutes on 2 cores)
    .venv/bin/python -m bench.serving_bench --quick    # smoke run (~1 minute, mostly vLLM start)

Setup: one vLLM server started and stopped by `serving.engine.EngineProcess` (fp32, 1 GiB KV
cache, max_loras 4, max_lora_rank 8) on a tiny random Llama (or `--model DIR`), with rank-8 random
LoRAs on q/k/v/o. The gateway runs in its own process (this module with `--gateway-worker`), built
by `serving.runtime` as `hybrid serve` builds it (uvicorn, no access log), so it never shares the
GIL with the load generator; it attaches to the server as a remote engine, because a supervisor
cannot cross a process boundary (the request path is the same). Load generator, gateway and vLLM
all share the machine's cores, as they would on one host. Requests are chat completions sent with
one `httpx.AsyncClient`, temperature 0, `max_tokens` = `min_tokens` = `--tokens`, so every request
generates the same number of tokens; streamed requests ask for usage.

What is measured:
1. gateway overhead: the same requests straight to vLLM and through the gateway, not streamed and
   streamed: latency of sequential single requests (p50/p95; streamed also time to first token)
   and throughput (requests/s, generated tokens/s) with `--concurrency` requests in flight.
   Direct and gateway alternate in ABBA order over `--rounds` rounds, so drifting machine load
   hits both; latencies are pooled over the rounds, throughput is the median round.
2. multi-LoRA cost: throughput at `--concurrency` (not streamed) with requests spread round-robin
   over 4 adapters vs all on the base model, through the gateway and straight to vLLM
   (4 adapters = max_loras, so all of them fit in one batch).
3. hot swap: `POST /admin/adapters/swap/promote` to a fresh version (registered before, not loaded)
   until the first streamed chunk answered by that version (`model == swap@sN`), `--swaps` times;
   vLLM's own `POST /v1/load_lora_adapter` call alone and until its first token; and, for
   comparison, the first-token time of the same adapter once it is loaded (vLLM reads an adapter's
   weights lazily, on its first request). These probes are streamed 1-token requests, so "first
   token" is exactly the first SSE chunk with a choice: on a busy CPU vLLM's API server often
   sends a longer answer's chunks together, after several decode steps.

Every run also records the CPU time used per request by the gateway and by vLLM's processes, and
the cores kept busy by other programs (how disturbed the run was). Noise: on 2 cores vLLM pins
its worker thread to core 0 and leaves core 1 to everything else (its API server and engine core,
the gateway, this client); measured throughput then swings several-fold between runs with OS
scheduling, so the tables give the median and the range of the rounds. Sequential latency, CPU
per request and the hot-swap times are the stable numbers there. With a real model
(`--model default`: SmolLM2-135M-Instruct) vLLM's engine is the bottleneck, as on a GPU host, and
the multi-LoRA rounds agree within a few percent:

    .venv/bin/python -m bench.serving_bench --parts multi-lora --model default --requests 32 \
        --lora-rounds 6     # about 10 minutes; writes bench/results/serving_multi_lora.*
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx

from bench.common import machine, markdown_table, summary_ms, write_results
from serving.engine.protocol import bearer

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = ["a0", "a1", "a2", "a3"]
PARTS = ("overhead", "multi-lora", "hot-swap")
SWAP = "swap"
PROMPTS = [
    "What is the capital of France?",
    "Please answer in one sentence: what is our refund window?",
    "How often should I descale the machine?",
    "Write a short note to our fellow owners about the year.",
    "What does the warranty cover?",
    "Summarise the report in one sentence.",
    "Which page of the report covers revenue?",
    "Give me one tip for happy brewing.",
]


# ---------------------------------------------------------------------------- load generation


@dataclass
class Sample:
    latency_s: float
    ttft_s: float | None
    tokens: int
    model: str | None


@dataclass
class Run:
    """One batch of requests at a fixed concurrency."""

    wall_s: float
    samples: list[Sample]
    errors: list[str] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    engine_s: dict[str, float] = field(default_factory=dict)
    """Sums and counts of vLLM's request-time histograms over the run (`engine_times`)."""
    """CPU seconds each process group used during the run (see `CpuMeter`)."""

    def summary(self) -> dict:
        ok = self.samples
        tokens = sum(s.tokens for s in ok)
        out = {
            "requests": len(ok),
            "errors": len(self.errors),
            "wall_s": round(self.wall_s, 3),
            "req_per_s": round(len(ok) / self.wall_s, 2),
            "tokens_per_s": round(tokens / self.wall_s, 1),
            "tokens_per_request": sorted({s.tokens for s in ok}),
            "latency": summary_ms([s.latency_s for s in ok]),
        }
        ttfts = [s.ttft_s for s in ok if s.ttft_s is not None]
        if ttfts:
            out["ttft"] = summary_ms(ttfts)
        if self.cpu_s:
            out["cpu_ms_per_request"] = {
                who: round(1000 * used / len(ok), 2)
                for who, used in self.cpu_s.items()
                if who != "others"
            }
            out["cores_busy"] = {
                who: round(used / self.wall_s, 2) for who, used in self.cpu_s.items()
            }
        if self.errors:
            out["first_errors"] = self.errors[:3]
        for key in ENGINE_TIMES:
            if self.engine_s.get(f"{key}_count"):
                mean = self.engine_s[f"{key}_sum"] / self.engine_s[f"{key}_count"]
                out[f"inside_engine_{key}_mean_ms"] = round(1000 * mean, 2)
        return out


def chat_body(model: str, prompt: str, tokens: int, stream: bool) -> dict:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "min_tokens": tokens,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


ENGINE_KEY_ENV = "HYBRID_BENCH_ENGINE_KEY"
"""The supervised engine's key, for the direct requests and the gateway worker (an environment
variable, so it is not on the worker's command line). The bench's gateway has no keys and
ignores the header."""


def engine_auth() -> dict[str, str]:
    return bearer(os.environ.get(ENGINE_KEY_ENV))


async def send(client: httpx.AsyncClient, base_url: str, body: dict) -> Sample:
    """One chat completion; raises on any non-200 answer."""
    url = base_url + "/v1/chat/completions"
    start = time.perf_counter()
    if not body.get("stream"):
        response = await client.post(url, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
        answer = response.json()
        return Sample(
            time.perf_counter() - start, None, answer["usage"]["completion_tokens"], answer["model"]
        )
    ttft, tokens, model = None, 0, None
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if "error" in chunk:
                raise RuntimeError(f"error inside the stream: {chunk['error']}")
            if chunk.get("choices") and ttft is None:
                ttft, model = time.perf_counter() - start, chunk.get("model")
            if chunk.get("usage") and not chunk.get("choices"):
                tokens = chunk["usage"]["completion_tokens"]
    return Sample(time.perf_counter() - start, ttft, tokens, model)


class CpuMeter:
    """CPU seconds used so far by the gateway process, by the vLLM server with its engine-core
    and worker processes, by this process (the load generator), and by every other program on
    the machine (`others`: how much the run was disturbed)."""

    def __init__(self, gateway_pid: int, engine_pid: int, engine_url: str | None = None):
        import psutil

        self.engine_url = engine_url

        self._gateway = psutil.Process(gateway_pid)
        self._engine = psutil.Process(engine_pid)

    def read(self) -> dict[str, float]:
        import psutil

        def used(proc) -> float:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                return 0.0
            return times.user + times.system

        ours = {
            "gateway": used(self._gateway),
            "vllm": used(self._engine) + sum(map(used, self._engine.children(recursive=True))),
            "client": time.process_time(),
        }
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
        return {**ours, "others": busy - sum(ours.values())}


async def run_load(
    base_url: str, bodies: list[dict], concurrency: int, meter: CpuMeter | None = None
) -> Run:
    """Send `bodies` with at most `concurrency` in flight; failures are counted, not raised."""
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    samples: list[Sample] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits, headers=engine_auth()) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                try:
                    samples.append(await send(client, base_url, body))
                except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        before = meter.read() if meter else {}
        inside_before = await engine_times(client, meter)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        inside_after = await engine_times(client, meter)
        after = meter.read() if meter else {}
    if not samples:
        raise RuntimeError(f"every request to {base_url} failed, e.g. {errors[0]}")
    if errors:
        progress(f"WARNING: {len(errors)} of {len(bodies)} requests failed, e.g. {errors[0]}")
    run = Run(wall, samples, errors, {who: after[who] - before[who] for who in after})
    if inside_before and inside_after:
        run.engine_s = {k: inside_after[k] - inside_before[k] for k in inside_after}
    return run


ENGINE_TIMES = {
    "e2e": "vllm:e2e_request_latency_seconds",
    "queue": "vllm:request_queue_time_seconds",
}
"""vLLM's own histograms of the time a request spends inside the engine (sum and count)."""


async def engine_times(client: httpx.AsyncClient, meter: CpuMeter | None) -> dict[str, float]:
    """Sums and counts of vLLM's request-time histograms now (from its /metrics)."""
    if meter is None or meter.engine_url is None:
        return {}
    response = await client.get(meter.engine_url + "/metrics")
    out: dict[str, float] = {}
    for line in response.text.splitlines():
        for key, metric in ENGINE_TIMES.items():
            for part in ("sum", "count"):
                if line.startswith(f"{metric}_{part}"):
                    out[f"{key}_{part}"] = out.get(f"{key}_{part}", 0.0) + float(line.split()[-1])
    return out


def bodies_for(models: list[str], n: int, tokens: int, stream: bool) -> list[dict]:
    """n requests; request i goes to models[i % len(models)] with prompt i % len(PROMPTS)."""
    return [
        chat_body(models[i % len(models)], PROMPTS[i % len(PROMPTS)], tokens, stream)
        for i in range(n)
    ]


def pooled(runs: list[Run]) -> dict:
    """Latencies of all rounds together; throughput of the median round (plus every round)."""
    merged = Run(sum(r.wall_s for r in runs), [s for r in runs for s in r.samples])
    merged.errors = [e for r in runs for e in r.errors]
    merged.cpu_s = {who: sum(r.cpu_s[who] for r in runs) for who in runs[0].cpu_s}
    merged.engine_s = {k: sum(r.engine_s.get(k, 0.0) for r in runs) for k in runs[0].engine_s}
    out = merged.summary()
    per_round = [r.summary() for r in runs]
    out["req_per_s"] = round(statistics.median(r["req_per_s"] for r in per_round), 2)
    out["tokens_per_s"] = round(statistics.median(r["tokens_per_s"] for r in per_round), 1)
    out["rounds_tokens_per_s"] = [r["tokens_per_s"] for r in per_round]
    return out


# ---------------------------------------------------------------------------- the three parts


async def gateway_overhead(urls: dict[str, str], base: str, meter: CpuMeter, args) -> dict:
    """Part 1: the same requests straight to vLLM and through the gateway."""
    out: dict = {}
    for stream in (False, True):
        mode = "stream" if stream else "non-stream"
        sequential: dict[str, list[Run]] = {"direct": [], "gateway": []}
        concurrent: dict[str, list[Run]] = {"direct": [], "gateway": []}
        for rnd in range(args.rounds):
            order = ["direct", "gateway"] if rnd % 2 == 0 else ["gateway", "direct"]
            for target in order:
                seq = bodies_for([base], args.sequential, args.tokens, stream)
                sequential[target].append(await run_load(urls[target], seq, 1, meter))
                conc = bodies_for([base], args.requests, args.tokens, stream)
                concurrent[target].append(
                    await run_load(urls[target], conc, args.concurrency, meter)
                )
                progress(
                    f"[overhead {mode} round {rnd + 1}/{args.rounds}] {target}: sequential p50 "
                    f"{sequential[target][-1].summary()['latency']['p50_ms']} ms, concurrent "
                    f"{concurrent[target][-1].summary()['tokens_per_s']} tok/s"
                    f"{disturbance(concurrent[target][-1])}"
                )
        out[mode] = {
            target: {
                "sequential": pooled(sequential[target]),
                "concurrent": pooled(concurrent[target]),
            }
            for target in ("direct", "gateway")
        }
        d, g = out[mode]["direct"], out[mode]["gateway"]
        out[mode]["ratios"] = {
            "sequential_p50_gateway_over_direct": ratio(
                g["sequential"]["latency"]["p50_ms"], d["sequential"]["latency"]["p50_ms"]
            ),
            "sequential_p50_added_ms": round(
                g["sequential"]["latency"]["p50_ms"] - d["sequential"]["latency"]["p50_ms"], 2
            ),
            "throughput_gateway_over_direct": ratio(
                g["concurrent"]["tokens_per_s"], d["concurrent"]["tokens_per_s"]
            ),
        }
        if stream:
            out[mode]["ratios"]["sequential_ttft_p50_added_ms"] = round(
                g["sequential"]["ttft"]["p50_ms"] - d["sequential"]["ttft"]["p50_ms"], 2
            )
    return out


async def multi_lora(urls: dict[str, str], base: str, meter: CpuMeter, args) -> dict:
    """Part 2: requests spread round-robin over 4 adapters vs all on the base model, through
    the gateway and straight to vLLM. Each round runs gateway and direct back to back for one
    spread (their order alternating), so each round gives one paired gateway/direct ratio that
    drifting machine load hits on both sides alike; the ratio reported is the median of those
    paired ratios, with their range and quartiles."""
    models = {
        "direct": {"base": [base], "4 adapters": [f"{a}@v1" for a in ADAPTERS]},
        "gateway": {"base": [base], "4 adapters": list(ADAPTERS)},
    }
    if "relay" in urls:  # a byte relay in its own process: the hop without the gateway's work
        models["relay"] = models["direct"]
    runs: dict[str, dict[str, list[Run]]] = {t: {"base": [], "4 adapters": []} for t in models}
    rounds = args.lora_rounds
    order = list(models)
    for rnd in range(rounds):
        spreads = ["base", "4 adapters"] if rnd % 2 == 0 else ["4 adapters", "base"]
        for spread in spreads:
            turn = (rnd // 2) % len(order)
            targets = order[turn:] + order[:turn]
            if (rnd // 2) % 2:
                targets.reverse()
            for target in targets:
                bodies = bodies_for(
                    models[target][spread], args.requests, args.tokens, args.lora_stream
                )
                runs[target][spread].append(
                    await run_load(urls[target], bodies, args.concurrency, meter)
                )
                summary = runs[target][spread][-1].summary()
                progress(
                    f"[multi-LoRA round {rnd + 1}/{rounds}] {target} {spread}: "
                    f"{summary['tokens_per_s']} tok/s, p50 {summary['latency']['p50_ms']} ms, "
                    f"inside vLLM {summary.get('inside_engine_e2e_mean_ms')} ms (queued "
                    f"{summary.get('inside_engine_queue_mean_ms')} ms)"
                    f"{disturbance(runs[target][spread][-1])}"
                )
    out: dict = {}
    for target, spreads in runs.items():
        out[target] = {spread: pooled(r) for spread, r in spreads.items()}
        out[target]["ratio_adapters_over_base"] = ratio(
            out[target]["4 adapters"]["tokens_per_s"], out[target]["base"]["tokens_per_s"]
        )
    out["paired_gateway_over_direct"] = {
        spread: paired_ratios(runs["gateway"][spread], runs["direct"][spread])
        for spread in ("base", "4 adapters")
    }
    if "relay" in runs:
        out["paired_relay_over_direct"] = {
            spread: paired_ratios(runs["relay"][spread], runs["direct"][spread])
            for spread in ("base", "4 adapters")
        }
    return out


def paired_ratios(gateway: list[Run], direct: list[Run]) -> dict:
    """Gateway/direct tokens/s of each round (run back to back), summarised."""
    ratios = sorted(
        g.summary()["tokens_per_s"] / d.summary()["tokens_per_s"]
        for g, d in zip(gateway, direct, strict=True)
    )
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {
        "median": round(statistics.median(ratios), 3),
        "q1": round(quartiles[0], 3),
        "q3": round(quartiles[2], 3),
        "min": round(ratios[0], 3),
        "max": round(ratios[-1], 3),
        "rounds": len(ratios),
        "rounds_at_or_above_0.95": sum(r >= 0.95 for r in ratios),
        "each": [round(r, 3) for r in ratios],
    }


async def hot_swap(urls: dict[str, str], swap_dirs: list[Path], args) -> dict:
    """Part 3: promote a fresh version to first token (gateway); load to first token (vLLM)."""
    gateway, direct = urls["gateway"], urls["direct"]
    timings: dict[str, list[float]] = {
        "gateway_promote_call": [],
        "gateway_promote_to_first_token": [],
        "gateway_first_token_warm": [],
        "vllm_load_call": [],
        "vllm_load_to_first_token": [],
        "vllm_first_token_warm": [],
    }
    unloads: list[float] = []
    async with httpx.AsyncClient(timeout=300, headers=engine_auth()) as client:
        await admin(client, gateway, "/adapters", {"path": str(swap_dirs[0]), "name": SWAP})
        await send(client, gateway, chat_body(SWAP, PROMPTS[0], args.tokens, True))  # load + warm
        for i in range(1, len(swap_dirs)):
            version = f"s{i}"
            await admin(
                client,
                gateway,
                "/adapters",
                {"path": str(swap_dirs[i]), "name": SWAP, "version": version, "promote": False},
            )
            body = chat_body(SWAP, PROMPTS[i % len(PROMPTS)], 1, True)  # first token only
            for side in ["gateway", "vllm"] if i % 2 else ["vllm", "gateway"]:
                if side == "gateway":
                    start = time.perf_counter()
                    await admin(client, gateway, f"/adapters/{SWAP}/promote", {"version": version})
                    called = time.perf_counter() - start
                    first = await send(client, gateway, body)
                    if first.model != f"{SWAP}@{version}":
                        raise RuntimeError(f"promoted {version} but {first.model} answered")
                    timings["gateway_promote_call"].append(called)
                    timings["gateway_promote_to_first_token"].append(called + first.ttft_s)
                    timings["gateway_first_token_warm"].append(
                        (await send(client, gateway, body)).ttft_s
                    )
                    await wait_retired(client, gateway, f"{SWAP}@{version}")
                else:
                    name = f"raw-{version}"
                    start = time.perf_counter()
                    await vllm_admin(
                        client,
                        direct,
                        "/v1/load_lora_adapter",
                        {"lora_name": name, "lora_path": str(swap_dirs[i])},
                    )
                    called = time.perf_counter() - start
                    first = await send(client, direct, {**body, "model": name})
                    timings["vllm_load_call"].append(called)
                    timings["vllm_load_to_first_token"].append(called + first.ttft_s)
                    warm = await send(client, direct, {**body, "model": name})
                    timings["vllm_first_token_warm"].append(warm.ttft_s)
                    start = time.perf_counter()
                    await vllm_admin(client, direct, "/v1/unload_lora_adapter", {"lora_name": name})
                    unloads.append(time.perf_counter() - start)
            progress(
                f"[hot swap {i}/{len(swap_dirs) - 1}] promote -> first token "
                f"{timings['gateway_promote_to_first_token'][-1] * 1000:.0f} ms, vLLM load -> "
                f"first token {timings['vllm_load_to_first_token'][-1] * 1000:.0f} ms"
            )
    out = {key: summary_ms(values) for key, values in timings.items()}
    out["vllm_unload_call"] = summary_ms(unloads)
    return out


async def admin(client: httpx.AsyncClient, gateway: str, path: str, body: dict | None) -> dict:
    response = await client.post(gateway + "/admin" + path, json=body)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST /admin{path}: {response.status_code} {response.text[:300]}")
    return response.json()


async def vllm_admin(client: httpx.AsyncClient, engine: str, path: str, body: dict) -> None:
    response = await client.post(engine + path, json=body)
    if response.status_code != 200:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")


async def wait_retired(client: httpx.AsyncClient, gateway: str, current: str) -> None:
    """Until the gateway has unloaded every version of `swap` but `current` (a promote retires
    the previous one in the background), so one repetition does not overlap the next."""
    deadline, loaded = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        listing = (await client.get(gateway + "/admin/adapters")).json()["adapters"]
        loaded = [a["id"] for a in listing if a["name"] == SWAP and a["loaded_on"]]
        if loaded == [current]:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the previous version of {SWAP} was not unloaded within 60 s: {loaded}")


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def disturbance(run: Run) -> str:
    return f" (other programs busy on {run.cpu_s['others'] / run.wall_s:.2f} cores)"


def progress(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------- processes


def serve_gateway(spec: dict) -> None:
    """The gateway process (`--gateway-worker`): the `hybrid serve` stack on a running engine."""
    import logging

    from serving.engine import RemoteEngineConfig
    from serving.gateway import GatewayConfig
    from serving.runtime import ServingRuntime, run_gateway

    logging.basicConfig(level=logging.WARNING)
    runtime = ServingRuntime(
        registry_root=Path(spec["registry"]),
        remote=RemoteEngineConfig(
            urls=(spec["engine_url"],), api_key=os.environ.get(ENGINE_KEY_ENV), timeout_s=120
        ),
        base_model=Path(spec["model"]),
        gateway=GatewayConfig(port=spec["port"]),
    )
    runtime.start()
    pauses = CollectorPauses()
    try:
        run_gateway(runtime.gateway_state())
    finally:
        Path(spec["gc_file"]).write_text(json.dumps(pauses.summary()), encoding="utf-8")


class CollectorPauses:
    """The garbage collector's runs in this process (a collection stops the event loop)."""

    def __init__(self) -> None:
        import gc

        self.by_generation: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.by_generation[info["generation"]].append(time.perf_counter() - self._start)

    def summary(self) -> dict:
        return {
            f"gen{g}": {
                "runs": len(p),
                "total_ms": round(1000 * sum(p), 1),
                "max_ms": round(1000 * max(p, default=0), 2),
            }
            for g, p in self.by_generation.items()
        }


def serve_relay(spec: dict) -> None:
    """The relay process (`--relay-worker`): copies bytes between each client connection and a
    new connection to the engine, parsing nothing."""
    from urllib.parse import urlsplit

    target = urlsplit(spec["engine_url"])

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", spec["port"])
        async with server:
            await server.serve_forever()

    import uvloop

    uvloop.run(main())


def engine_affinity(pid: int) -> dict[str, int]:
    """Cores each thread of the vLLM server's processes may run on -> how many threads."""
    import psutil

    seen: dict[str, int] = {}
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            threads = proc.threads()
        except psutil.NoSuchProcess:
            continue
        for thread in threads:
            try:
                cores = ",".join(map(str, sorted(os.sched_getaffinity(thread.id))))
            except OSError:
                continue
            seen[cores] = seen.get(cores, 0) + 1
    return seen


def parse_cpus(text: str | None) -> set[int] | None:
    return None if not text else {int(c) for c in text.split(",")}


class GatewayProcess:
    def __init__(
        self, spec: dict, log_path: Path, cpus: set[int] | None = None, role: str = "gateway"
    ):
        self.url = f"http://127.0.0.1:{spec['port']}"
        self.log_path = log_path
        self.ready_path = "/ready" if role == "gateway" else "/health"
        pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *pin,
                    sys.executable,
                    "-m",
                    "bench.serving_bench",
                    f"--{role}-worker",
                    json.dumps(spec),
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session, as a deployed service (and the supervised vLLM) has: with
                # the kernel's autogroup scheduling, CPU is shared fairly between sessions, so
                # in this process's session it would share the load generator's portion.
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(self.url + self.ready_path, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gateway at {self.url} not ready after {timeout_s} s; {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_adapters(model_dir: Path, root: Path, count: int) -> list[Path]:
    from tests.helpers.adapters import random_lora

    return [random_lora(model_dir, root / f"lora{i}", rank=8, seed=100 + i) for i in range(count)]


async def warm_up(urls: dict[str, str], base: str, tokens: int) -> None:
    """Load the 4 adapters through the gateway and send every model a few requests both ways,
    so lazy weight loading and first-request costs stay out of parts 1 and 2."""
    async with httpx.AsyncClient(timeout=300, headers=engine_auth()) as client:
        for name in ADAPTERS:
            await admin(client, urls["gateway"], f"/adapters/{name}/load", None)
        for target, names in (
            ("gateway", [base, *ADAPTERS]),
            ("direct", [base, *(f"{a}@v1" for a in ADAPTERS)]),
        ):
            for name in names:
                for stream in (False, True):
                    await send(client, urls[target], chat_body(name, PROMPTS[0], tokens, stream))
    for target in ("direct", "gateway"):
        await run_load(urls[target], bodies_for([base], 16, tokens, False), 8)


async def bench(
    urls: dict[str, str], base: str, adapter_dirs: list[Path], meter: CpuMeter, args
) -> dict:
    async with httpx.AsyncClient(timeout=300, headers=engine_auth()) as client:
        for name, folder in zip(ADAPTERS, adapter_dirs, strict=False):
            await admin(client, urls["gateway"], "/adapters", {"path": str(folder), "name": name})
    await warm_up(urls, base, args.tokens)
    progress("warm-up done")
    before, start = meter.read(), time.perf_counter()
    results: dict = {}
    if "overhead" in args.parts:
        results["gateway_overhead"] = await gateway_overhead(urls, base, meter, args)
    if "multi-lora" in args.parts:
        results["multi_lora"] = await multi_lora(urls, base, meter, args)
    if "hot-swap" in args.parts:
        results["hot_swap"] = await hot_swap(urls, adapter_dirs[len(ADAPTERS) :], args)
    after, wall = meter.read(), time.perf_counter() - start
    results["cores_busy_overall"] = {
        who: round((after[who] - before[who]) / wall, 2) for who in after
    }
    return results


# ---------------------------------------------------------------------------- report


def spread_of(run: dict) -> str:
    rounds = run["rounds_tokens_per_s"]
    return f"{run['tokens_per_s']} ({min(rounds)}-{max(rounds)})"


def tables(results: dict, args) -> str:
    parts = []
    if "gateway_overhead" in results:
        parts.append(overhead_table(results, args))
    if "multi_lora" in results:
        parts.append(multi_lora_table(results, args))
    if "hot_swap" in results:
        parts.append(hot_swap_table(results))
    others = results["cores_busy_overall"]["others"]
    parts.append(
        f"Other programs kept {others} of {os.cpu_count()} cores busy on average during "
        "the measurements (0 on a quiet machine; the higher, the noisier the numbers)."
    )
    return "\n\n".join(parts)


def overhead_table(results: dict, args) -> str:
    rows = []
    for mode, part in results["gateway_overhead"].items():
        for target in ("direct", "gateway"):
            seq, conc = part[target]["sequential"], part[target]["concurrent"]
            rows.append(
                [
                    mode,
                    target,
                    seq["latency"]["p50_ms"],
                    seq["latency"]["p95_ms"],
                    seq.get("ttft", {}).get("p50_ms", ""),
                    conc["req_per_s"],
                    spread_of(conc),
                    conc["latency"]["p50_ms"],
                    conc["cpu_ms_per_request"]["gateway"] if target == "gateway" else "",
                    conc["cpu_ms_per_request"]["vllm"],
                ]
            )
    text = f"Gateway overhead ({args.tokens} tokens/request, concurrency {args.concurrency}):\n\n"
    text += markdown_table(
        [
            "mode",
            "target",
            "seq p50 ms",
            "seq p95 ms",
            "seq TTFT p50 ms",
            "conc req/s",
            "conc tok/s median (rounds)",
            "conc p50 ms",
            "gateway CPU ms/req",
            "vLLM CPU ms/req",
        ],
        rows,
    )
    for mode, part in results["gateway_overhead"].items():
        r = part["ratios"]
        text += (
            f"\n\n{mode}: gateway adds {r['sequential_p50_added_ms']} ms to the sequential p50 "
            f"(x{r['sequential_p50_gateway_over_direct']}); throughput gateway/direct "
            f"{r['throughput_gateway_over_direct']}"
        )
    return text


def multi_lora_table(results: dict, args) -> str:
    rows = []
    for target in [t for t in ("direct", "gateway", "relay") if t in results["multi_lora"]]:
        part = results["multi_lora"][target]
        for spread in ("base", "4 adapters"):
            cpu = part[spread]["cpu_ms_per_request"]
            rows.append(
                [
                    target,
                    spread,
                    part[spread]["req_per_s"],
                    spread_of(part[spread]),
                    part[spread]["latency"]["p50_ms"],
                    cpu["gateway"] if target == "gateway" else "",
                    cpu["vllm"],
                    part[spread].get("inside_engine_e2e_mean_ms", ""),
                    part["ratio_adapters_over_base"] if spread == "4 adapters" else "",
                ]
            )
    streamed = "streamed" if getattr(args, "lora_stream", False) else "not streamed"
    model = "tiny random Llama" if args.model == "tiny" else Path(args.model).name
    text = (
        f"Multi-LoRA ({model}, {args.tokens} tokens a request, {streamed}, concurrency "
        f"{args.concurrency}, {args.requests} requests a run, round-robin, {args.lora_rounds} "
        "rounds; gateway and direct back to back in each round):\n\n"
    )
    text += markdown_table(
        [
            "target",
            "requests on",
            "req/s",
            "tok/s median (rounds)",
            "p50 ms",
            "gateway CPU ms/req",
            "vLLM CPU ms/req",
            "inside vLLM ms (mean)",
            "tok/s vs base",
        ],
        rows,
    )
    for key, who in (
        ("paired_gateway_over_direct", "gateway"),
        ("paired_relay_over_direct", "relay"),
    ):
        for spread, paired in results["multi_lora"].get(key, {}).items():
            text += (
                f"\n\n{spread}: {who}/direct tokens/s, paired by round: median "
                f"{paired['median']} (quartiles {paired['q1']}-{paired['q3']}, range "
                f"{paired['min']}-{paired['max']}; {paired['rounds_at_or_above_0.95']} of "
                f"{paired['rounds']} rounds at or above 0.95)"
            )
    if "relay" in results["multi_lora"]:
        text += (
            "\n\nrelay: the same requests as direct through a plain TCP byte relay in its own "
            "process (no HTTP parsing): what one more process hop costs on this machine."
        )
    return text


def hot_swap_table(results: dict) -> str:
    labels = {
        "gateway_promote_to_first_token": "gateway: promote call -> first token of new version",
        "gateway_promote_call": "gateway: promote call alone",
        "gateway_first_token_warm": "gateway: first token, adapter already loaded",
        "vllm_load_to_first_token": "vLLM: load_lora_adapter -> first token",
        "vllm_load_call": "vLLM: load_lora_adapter call alone",
        "vllm_first_token_warm": "vLLM: first token, adapter already loaded",
    }
    swap = results["hot_swap"]
    text = "Hot swap (fresh version each time; streamed 1-token probes):\n\n"
    return text + markdown_table(
        ["measurement", "n", "p50 ms", "p95 ms"],
        [
            [label, swap[k]["n"], swap[k]["p50_ms"], swap[k]["p95_ms"]]
            for k, label in labels.items()
        ],
    )


def default_model() -> Path:
    """The embedded default base model's folder (SmolLM2-135M-Instruct, no hub access)."""
    from finetune.base_models import DEFAULT_BASE_MODEL, resolve_base_model

    return resolve_base_model(DEFAULT_BASE_MODEL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default="tiny",
        help="a model folder, 'tiny' (a random tiny Llama built here) or 'default' "
        "(SmolLM2-135M-Instruct, the embedded default)",
    )
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--sequential", type=int, default=20, help="sequential requests a round")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrent run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per comparison")
    parser.add_argument(
        "--lora-rounds", type=int, default=12, help="paired rounds of the multi-LoRA part"
    )
    parser.add_argument("--swaps", type=int, default=8, help="hot-swap repetitions")
    parser.add_argument(
        "--parts",
        default="overhead,multi-lora,hot-swap",
        help="comma-separated parts to run; a subset writes bench/results/serving_PARTS.*",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run to check that it works: 16 tokens, 5 + 16 requests, 1 round, 2 swaps",
    )
    parser.add_argument(
        "--gateway-cpus", help="cores the gateway process may use, e.g. '1' (default: any)"
    )
    parser.add_argument(
        "--client-cpus", help="cores the load generator may use, e.g. '1' (default: any)"
    )
    parser.add_argument(
        "--lora-stream", action="store_true", help="multi-LoRA part: streamed requests"
    )
    parser.add_argument(
        "--relay",
        action="store_true",
        help="multi-LoRA part: also send the direct requests through a plain TCP relay process",
    )
    parser.add_argument("--gateway-worker", help=argparse.SUPPRESS)
    parser.add_argument("--relay-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gateway_worker:
        serve_gateway(json.loads(args.gateway_worker))
        return
    if args.relay_worker:
        serve_relay(json.loads(args.relay_worker))
        return
    if args.quick:
        args.tokens, args.sequential, args.requests, args.rounds, args.swaps = 16, 5, 16, 1, 2
        args.lora_rounds = 2
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown or not args.parts:
        parser.error(f"--parts: unknown {unknown or 'none given'}; choose from {', '.join(PARTS)}")
    # a `kill` must stop vLLM too: turn SIGTERM into an exit that runs the finally blocks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from serving.engine import EngineConfig, EngineProcess, RestartPolicy

    root = Path(tempfile.mkdtemp(prefix="hybrid-serving-bench-"))
    if args.model == "tiny":
        from tests.helpers.tiny_llama import build_tiny_llama

        model_dir, served = build_tiny_llama(root / "tiny"), "tiny-llama"
    else:
        model_dir = default_model() if args.model == "default" else Path(args.model).resolve()
        served = model_dir.name
        args.model = str(model_dir)  # recorded with the results and named in the tables
    config = EngineConfig(
        model=str(model_dir),
        served_model_name=served,
        max_loras=len(ADAPTERS),
        max_lora_rank=8,
        max_cpu_loras=2 * len(ADAPTERS),
        max_model_len=512,
        dtype="float32",
        kv_cache_gib=1,
        log_file=root / "vllm.log",
        startup_timeout_s=600,
        restart=RestartPolicy(max_restarts=0),  # a crash must fail the bench, not hide in it
    )
    engine = EngineProcess(config)
    gateway: GatewayProcess | None = None
    relay: GatewayProcess | None = None
    gateway_gc: dict = {}
    load_start = os.getloadavg()
    progress(f"starting vLLM on {model_dir} (log: {config.log_file}); load avg {load_start}")
    pool = ThreadPoolExecutor(1)
    results = None
    affinity: dict[str, int] = {}
    try:
        started = pool.submit(engine.start)  # build the adapters while vLLM starts
        adapter_dirs = make_adapters(model_dir, root / "adapters", len(ADAPTERS) + args.swaps + 1)
        started.result()
        progress(f"vLLM ready after {engine.last_ready_s:.1f} s at {engine.url}")
        os.environ[ENGINE_KEY_ENV] = engine.api_key  # inherited by the gateway worker
        spec = {
            "registry": str(root / "registry"),
            "engine_url": engine.url,
            "model": str(model_dir),
            "port": free_port(),
            "gc_file": str(root / "gateway-gc.json"),
        }
        affinity = engine_affinity(engine.pid)
        progress(f"vLLM threads by allowed cores: {affinity}")
        if args.client_cpus:
            os.sched_setaffinity(0, parse_cpus(args.client_cpus))
        gateway = GatewayProcess(spec, root / "gateway.log", parse_cpus(args.gateway_cpus))
        gateway.wait_ready()
        progress(f"gateway ready at {gateway.url} (log: {gateway.log_path})")
        urls = {"direct": engine.url, "gateway": gateway.url}
        if args.relay:
            relay_spec = {"engine_url": engine.url, "port": free_port()}
            relay = GatewayProcess(
                relay_spec, root / "relay.log", parse_cpus(args.gateway_cpus), role="relay"
            )
            relay.wait_ready()
            urls["relay"] = relay.url
        meter = CpuMeter(gateway.proc.pid, engine.pid, engine.url)
        results = asyncio.run(bench(urls, served, adapter_dirs, meter, args))
    finally:
        if relay is not None:
            relay.stop()
        if gateway is not None:
            gateway.stop()
            with contextlib.suppress(OSError, ValueError):
                gateway_gc = json.loads((root / "gateway-gc.json").read_text(encoding="utf-8"))
        engine.stop()  # also interrupts a start still in progress
        pool.shutdown()
        progress("vLLM and gateway stopped")
        if results is None:
            progress(f"failed; the logs are kept in {root}")
    shutil.rmtree(root, ignore_errors=True)

    table = tables(results, args)
    every = set(args.parts) == set(PARTS)
    path = write_results(
        "serving"
        if every
        else "serving_"
        + "_".join(p.replace("-", "_") for p in args.parts)
        + ("_stream" if args.lora_stream else ""),
        {
            "machine": machine(),
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "args": {k: v for k, v in vars(args).items() if not k.endswith("_worker")},
            "model": "tiny random Llama (tests/helpers/tiny_llama.py)"
            if args.model == "tiny"
            else str(model_dir),
            "engine": config.model_dump(mode="json", exclude={"log_file", "env"}),
            "vllm_ready_s": round(engine.last_ready_s or 0, 1),
            "vllm_threads_by_allowed_cores": affinity,
            "gateway_garbage_collections": gateway_gc,
            "results": results,
        },
        table,
    )
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
