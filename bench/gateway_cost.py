"""The gateway's own cost: how many requests one gateway core relays, what each costs it in CPU,
and what it adds to latency, with an engine that costs nothing (issue 15).

    .venv/bin/python -m bench.gateway_cost                 # about 3 minutes on 2 cores
    .venv/bin/python -m bench.gateway_cost --quick         # smoke run (~1 minute)
    .venv/bin/python -m bench.gateway_cost --baseline fe863cf  # and the gateway of a commit,
                                                               # in turns (before/after)

Setup: an INSTANT ENGINE, the fast tests' stand-in for vLLM (tests/serving/fake_engine.py: model
listing, runtime LoRA loading, chat and completions) served by uvicorn in a process of its own,
answering every request at once with the same 16-word reply (streamed: 16 content chunks and a
usage chunk, as vLLM sends them). The gateway is `hybrid serve` as a user starts it, attached to
that engine through `remote_engines`, with an app (a knowledge base of three short guides,
MiniLM embeddings in embedded Chroma, hybrid search) over a LoRA adapter registered offline.
The gateway is pinned to core 0 (`taskset -c 0`, one OpenMP thread); the engine and the load
generator (this process: aiohttp, `--concurrency` requests in flight on one keep-alive pool)
share core 1. So a run measures what ONE gateway core can do, as long as core 1 keeps up: the
table gives the load generator's own ceiling (the same requests straight to the engine) and how
busy the gateway's core was (1.0 = it was the bottleneck).

Measured for base-model, adapter and app requests, not streamed and streamed:
- requests/s through the gateway for `--seconds` at `--concurrency`, and gateway CPU ms per
  request (user + system time of the `hybrid serve` process and its children, from /proc);
  per streamed token: the streamed request's CPU divided by its 16 tokens;
- added latency: the p50 of sequential requests (one in flight) through the gateway minus the
  p50 of the same requests straight to the engine (an app's direct twin: the same question to
  its adapter, without retrieval, so an app's added latency includes its retrieval), and the
  gateway's CPU per request in those runs.
With `--baseline COMMIT` a second gateway, from that commit's files (git archive), runs beside
the first on the same core; they take turns (ABBA) in every measurement and alternate request
by request in the latency runs, so both see the same machine. On a shared machine other
programs take part of the gateway's core (`core busy` below 1) and the req/s drop with it; the
CPU per request moves much less, so compare those.

Anchors (issue 15): LiteLLM publishes roughly 70-130 requests/s per vCPU and cites 3.25 ms of
added latency. Targets: >= 500 non-streamed and >= 300 streamed requests/s per gateway core,
added p50 <= 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import aiohttp
import yaml

from bench.common import machine, markdown_table, percentile, write_results

REPO = Path(__file__).resolve().parents[1]
TOKENS = 16
REPLY = (
    "Returns are accepted within forty five days of delivery for a full refund [1] happy brewing"
)
"""The engine's answer: TOKENS words, each streamed as one chunk."""
BASE = "base"
ADAPTER = "voice"
APP = "brewbird"
QUESTION = "How long do I have to return my machine for a refund?"
GATEWAY_CORE, OTHER_CORE = 0, 1
KINDS = ("base", "adapter", "app")
TARGETS = {"base": BASE, "adapter": ADAPTER, "app": APP}
DIRECT_TWIN = {"base": BASE, "adapter": f"{ADAPTER}@v1", "app": f"{ADAPTER}@v1"}
"""What a kind's request is sent as straight to the engine (an app's retrieval has no twin)."""
ANCHORS = {"litellm_req_per_s_per_vcpu": [70, 130], "litellm_added_latency_ms": 3.25}
TARGETS_PER_CORE = {"non-stream req/s": 500, "stream req/s": 300, "added p50 ms": 1.0}


def body(model: str, stream: bool) -> bytes:
    payload: dict = {
        "model": model,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": TOKENS,
        "temperature": 0,
    }
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


# ---------------------------------------------------------------------------- load generation


async def one(session: aiohttp.ClientSession, url: str, data: bytes, stream: bool) -> None:
    """One chat completion read to its end; raises unless it is a whole, successful answer."""
    async with session.post(
        url, data=data, headers={"Content-Type": "application/json"}
    ) as response:
        raw = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {raw[:300]!r}")
    if stream:
        if not raw.endswith(b"data: [DONE]\n\n") or raw.count(b'"content"') < TOKENS:
            raise RuntimeError(f"incomplete stream: {raw[-300:]!r}")
    elif b'"choices"' not in raw:
        raise RuntimeError(f"not an answer: {raw[:300]!r}")


def session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def throughput(
    base_url: str,
    model: str,
    stream: bool,
    concurrency: int,
    seconds: float,
    meter: CpuMeter | None = None,
):
    """Requests completed in `seconds` with `concurrency` in flight (after one warm-up request
    per connection); (count, wall s, CPU s `meter` counted meanwhile, errors)."""
    url = base_url + "/v1/chat/completions"
    data = body(model, stream)
    done, errors = 0, []
    async with session(concurrency) as http:
        await asyncio.gather(*(one(http, url, data, stream) for _ in range(concurrency)))
        used = meter.read() if meter else 0.0
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                try:
                    await one(http, url, data, stream)
                    done += 1
                except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) > 20:
                        raise RuntimeError(f"too many errors, e.g. {errors[0]}") from None

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        used = (meter.read() if meter else 0.0) - used
    return done, wall, used, errors


async def sequential(targets: list[tuple[str, str]], stream: bool, n: int) -> list[list[float]]:
    """n requests one at a time to each (base URL, model) target, interleaved (so drifting
    machine load hits all alike); the latencies of each, in seconds."""
    out: list[list[float]] = [[] for _ in targets]
    urls = [url + "/v1/chat/completions" for url, _ in targets]
    datas = [body(model, stream) for _, model in targets]
    sessions = [session(1) for _ in targets]
    try:
        for i in range(len(targets)):  # open each connection
            await one(sessions[i], urls[i], datas[i], stream)
        for _ in range(n):
            for i in range(len(targets)):
                start = time.perf_counter()
                await one(sessions[i], urls[i], datas[i], stream)
                out[i].append(time.perf_counter() - start)
    finally:
        for http in sessions:
            await http.close()
    return out


# ---------------------------------------------------------------------------- processes


class CpuMeter:
    """CPU seconds (user + system, from /proc via psutil) of a process and its children."""

    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)

    def read(self) -> float:
        import psutil

        total = 0.0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s} s; see {log}")


@contextmanager
def process(command: list[str], log: Path, ready_url: str, env: dict | None = None, cwd=REPO):
    """`command` started (output to `log`) until `ready_url` answers 200; SIGINT at the end."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        wait_http(ready_url, proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve_stub(port: int) -> None:
    """The instant engine (`--stub-worker PORT`)."""
    import collections

    import uvicorn

    from tests.serving.fake_engine import FakeEngine

    engine = FakeEngine(base=BASE)
    engine.reply = REPLY
    engine.requests = collections.deque(maxlen=8)  # it keeps every body otherwise
    uvicorn.run(engine.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def prepare(work: Path, stub_url: str) -> Path:
    """A work folder as a user's: base model folder, knowledge base, adapter, app, hybrid.yaml."""
    from tests.helpers.adapters import random_lora
    from tests.helpers.documents import write_brewbird_docs
    from tests.helpers.tiny_llama import build_tiny_llama

    model = build_tiny_llama(work / "tiny")
    docs = write_brewbird_docs(work / "docs", "refunds.md", "warranty.md", "contact.md")
    app = {
        "name": APP,
        "knowledge_base": "brewbird-kb",
        "adapter": ADAPTER,
        "persona": "You are Pip, BrewBird's assistant.",
        "no_context": {"message": "That is not in BrewBird's guides. Happy brewing!"},
    }
    (work / "apps").mkdir(exist_ok=True)
    (work / "apps" / "brewbird.yaml").write_text(yaml.safe_dump(app), encoding="utf-8")
    config = {
        "store": {"mode": "embedded", "path": str(work / "chroma")},
        "remote_engines": {"urls": [stub_url]},
        "base_model": str(model),
        "adapters": {"registry": str(work / "registry")},
        "apps": [str(work / "apps")],
    }
    path = work / "hybrid.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    hybrid = [sys.executable, "-m", "hybrid.cli", "--config", str(path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    lora = random_lora(model, work / "lora", rank=8, seed=1)
    for args in (
        ["kb", "create", "brewbird-kb"],
        ["kb", "ingest", "-q", "brewbird-kb", str(docs)],
        ["adapter", "register", str(lora), "--name", ADAPTER, "--offline"],
    ):
        subprocess.run([*hybrid, *args], check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return path


# ---------------------------------------------------------------------------- measurements


async def measure(gateways: dict[str, tuple[str, CpuMeter]], stub: str, args) -> dict:
    """Every kind and mode through each running gateway; the gateways take turns (ABBA) so
    that drifting machine load hits them alike."""
    out: dict = {label: {} for label in gateways}
    labels = list(gateways)
    for kind in args.kinds:
        for stream in (False, True):
            mode = "stream" if stream else "non-stream"
            rounds: dict[str, list[dict]] = {label: [] for label in labels}
            for rnd in range(args.rounds):
                for label in labels if rnd % 2 == 0 else labels[::-1]:
                    url, meter = gateways[label]
                    done, wall, used, errors = await throughput(
                        url, TARGETS[kind], stream, args.concurrency, args.seconds, meter
                    )
                    rounds[label].append(
                        {
                            "requests": done,
                            "req_per_s": round(done / wall, 1),
                            "cpu_ms_per_request": round(1000 * used / max(done, 1), 3),
                            "gateway_core_busy": round(used / wall, 2),
                            "errors": len(errors),
                        }
                    )
            targets = [(gateways[label][0], TARGETS[kind]) for label in labels]
            before = {label: gateways[label][1].read() for label in labels}
            *through, direct = await sequential(
                [*targets, (stub, DIRECT_TWIN[kind])], stream, args.sequential
            )
            # the same load for every gateway (an idle one uses no CPU), whatever else runs
            sequential_cpu_ms = {
                label: round(
                    1000 * (gateways[label][1].read() - before[label]) / (args.sequential + 1), 3
                )
                for label in labels
            }
            direct_p50 = round(1000 * percentile(direct, 0.5), 3)
            for label, latencies in zip(labels, through, strict=True):
                runs = rounds[label]
                cpu_ms = round(statistics.median(r["cpu_ms_per_request"] for r in runs), 3)
                entry = {
                    "rounds": runs,
                    "req_per_s": round(statistics.median(r["req_per_s"] for r in runs), 1),
                    "gateway_core_busy": round(
                        statistics.median(r["gateway_core_busy"] for r in runs), 2
                    ),
                    "cpu_ms_per_request": cpu_ms,
                    "req_per_s_per_core": round(1000 / cpu_ms, 1),
                    "sequential_cpu_ms_per_request": sequential_cpu_ms[label],
                    "p50_ms": round(1000 * percentile(latencies, 0.5), 3),
                    "direct_p50_ms": direct_p50,
                }
                entry["added_p50_ms"] = round(entry["p50_ms"] - direct_p50, 3)
                if stream:
                    entry["cpu_ms_per_token"] = round(cpu_ms / TOKENS, 3)
                    plain = out[label][f"{kind} non-stream"]["cpu_ms_per_request"]
                    entry["cpu_ms_per_token_marginal"] = round((cpu_ms - plain) / TOKENS, 3)
                out[label][f"{kind} {mode}"] = entry
                progress(
                    f"  {label} {kind} {mode}: {entry['req_per_s']} req/s (core busy "
                    f"{entry['gateway_core_busy']}), {cpu_ms} CPU ms/request, added p50 "
                    f"{entry['added_p50_ms']} ms"
                )
    return out


async def measure_direct(stub: str, args) -> dict:
    """The load generator's ceiling: the same requests straight to the engine."""
    out = {}
    for stream in (False, True):
        done, wall, _, _ = await throughput(stub, BASE, stream, args.concurrency, args.seconds)
        out["stream" if stream else "non-stream"] = round(done / wall, 1)
    progress(f"  direct to the engine: {out} req/s")
    return out


def gateway_command(src: Path, config: Path, port: int) -> tuple[list[str], dict]:
    """`hybrid serve` from source tree `src` on core GATEWAY_CORE, one OpenMP thread."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [*pinned(GATEWAY_CORE), sys.executable, "-m", "hybrid.cli"]
    return [*command, "--config", str(config), "serve", "--port", str(port)], env


# ---------------------------------------------------------------------------- report


def table(results: dict) -> str:
    labels = list(results["gateways"])
    rows = []
    for key in results["gateways"][labels[-1]]:
        for label in labels:
            r = results["gateways"][label][key]
            rows.append(
                [
                    key,
                    f"{label} ({results['sources'][label]})",
                    r["req_per_s"],
                    r["gateway_core_busy"],
                    r["cpu_ms_per_request"],
                    r["req_per_s_per_core"],
                    r.get("cpu_ms_per_token", ""),
                    r["sequential_cpu_ms_per_request"],
                    r["p50_ms"],
                    r["added_p50_ms"],
                ]
            )
    direct = results["direct_ceiling_req_per_s"]
    text = (
        "One gateway core (`hybrid serve` under `taskset -c 0`) over an instant engine "
        f"({TOKENS}-token replies), concurrency {results['args']['concurrency']}, median of "
        f"{results['args']['rounds']} runs of {results['args']['seconds']:g} s:\n\n"
    )
    text += markdown_table(
        [
            "requests",
            "gateway",
            "req/s",
            "core busy",
            "CPU ms/request",
            "req/s per core (1000/CPU ms)",
            "CPU ms/token",
            "CPU ms/request, one at a time",
            "p50 ms",
            "added p50 ms",
        ],
        rows,
    )
    text += (
        "\n\nreq/s is what the run got; `core busy` how much of its core the gateway used "
        "meanwhile (below 1: other programs took part of it); req/s per core is what one fully "
        "used core relays at the measured CPU cost; `one at a time`: CPU per request in the "
        "latency runs, where every gateway gets the same load. Added p50: sequential requests "
        "through the "
        "gateway minus the same straight to the engine (an app's: to its adapter, so its "
        "retrieval counts). Load generator + engine ceiling on the other core (straight to the "
        f"engine): {direct['non-stream']} non-streamed, {direct['stream']} streamed req/s. "
        "Anchors: LiteLLM ~70-130 req/s per vCPU, 3.25 ms added latency. Targets: >= 500 "
        "non-streamed and >= 300 streamed req/s per gateway core, added p50 <= 1 ms."
    )
    return text


def checkout(commit: str, folder: Path) -> Path:
    """The repository's files at `commit` in `folder` (git archive)."""
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit], cwd=REPO, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def source_name(src: Path) -> str:
    """A source tree's commit (short hash, `+changes` when it has uncommitted ones), or
    `files` for a tree that is no git checkout."""
    run = functools.partial(subprocess.run, cwd=src, capture_output=True, text=True)
    head = run(["git", "rev-parse", "--short", "HEAD"])
    if head.returncode != 0:
        return "files"
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    return head.stdout.strip() + ("+changes" if dirty else "")


def progress(message: str) -> None:
    print(message, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--seconds", type=float, default=5.0, help="each throughput run")
    parser.add_argument("--rounds", type=int, default=2, help="throughput runs per measurement")
    parser.add_argument("--sequential", type=int, default=200, help="requests per latency p50")
    parser.add_argument(
        "--baseline", metavar="COMMIT", help="also measure the gateway of this commit (before)"
    )
    parser.add_argument(
        "--kinds", type=lambda v: v.split(","), default=list(KINDS), help="base,adapter,app"
    )
    parser.add_argument("--quick", action="store_true", help="1 s runs, 1 round, 30 sequential")
    parser.add_argument("--stub-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub_worker:
        serve_stub(args.stub_worker)
        return
    if args.quick:
        args.seconds, args.rounds, args.sequential = 1.0, 1, 30
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("this bench pins the gateway to one core and the rest to another")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.sched_setaffinity(0, {OTHER_CORE})  # the load generator, beside the engine
    work = Path(tempfile.mkdtemp(prefix="hybrid-gateway-cost-"))
    stub_port = free_port()
    stub = f"http://127.0.0.1:{stub_port}"
    progress(f"work folder {work}")
    results: dict = {}
    stub_command = [*pinned(OTHER_CORE), sys.executable, "-m", "bench.gateway_cost"]
    stub_command += ["--stub-worker", str(stub_port)]
    sources = {"after": REPO}
    if args.baseline is not None:
        sources = {"before": checkout(args.baseline, work / "baseline"), **sources}
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(process(stub_command, work / "stub.log", stub + "/health"))
            config = prepare(work, stub)
            progress("engine stub and work folder ready")
            results["direct_ceiling_req_per_s"] = asyncio.run(measure_direct(stub, args))
            gateways = {}
            for label, src in sources.items():
                port = free_port()
                command, env = gateway_command(src, config, port)
                url = f"http://127.0.0.1:{port}"
                log = work / f"gateway-{label}.log"
                progress(f"starting gateway {label} from {src} (log {log})")
                # cwd too: `python -m` puts the working directory first on sys.path
                proc = stack.enter_context(process(command, log, url + "/ready", env, cwd=src))
                gateways[label] = (url, CpuMeter(proc.pid))
            results["gateways"] = asyncio.run(measure(gateways, stub, args))
    except BaseException:
        progress(f"failed; the logs are kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)
    results["args"] = {k: v for k, v in vars(args).items() if k != "stub_worker"}
    results["sources"] = {"after": source_name(REPO)}
    if args.baseline is not None:
        results["sources"]["before"] = args.baseline
    text = table(results)
    path = write_results(
        "gateway_cost",
        {
            "machine": machine(),
            "load_average_end": os.getloadavg(),
            "tokens_per_stream": TOKENS,
            "anchors": ANCHORS,
            "targets_per_gateway_core": TARGETS_PER_CORE,
            **results,
        },
        text,
    )
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
