"""Gateway throughput with 1 and 2 worker processes (`hybrid serve --workers N`), over an
instant engine, so that the gateway is what limits: non-streamed base-model chat requests per
second, from a load generator in other processes.

    python -m bench.gateway_workers          # under flock /tmp/hybrid-team/vllm.lock here

The engine stub is a bare ASGI app (no FastAPI) answering at once, in its own process; the load
generator is `LOADERS` processes of `CONCURRENCY` asyncio connections each, for `DURATION_S`.
The issue's target is >= 1.7x from 1 to 2 workers; that needs cores for the two workers beyond
the engine stub's and the load generator's, so the table states the machine's CPU count.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from bench.common import HYBRID, machine, markdown_table, write_results
from bench.gateway_cost import CpuMeter
from finetune.base_models import DEFAULT_BASE_MODEL, resolve_base_model

DURATION_S = 10.0
WARMUP_S = 2.0
LOADERS = 2
CONCURRENCY = 16
BODY = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}

STUB = """
import json, sys, uvicorn
MODELS = json.dumps({"object": "list", "data": [{"id": "base", "root": "/m", "parent": None}]}).encode()
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "base",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "an instant answer"},
    "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}).encode()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = MODELS if scope["path"] == "/v1/models" else b"{}" if scope["path"] == "/health" else ANSWER
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def _load(url: str, until: float, warm_until: float, out) -> None:
    async def run() -> int:
        done = 0
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def one() -> None:
                nonlocal done
                while time.time() < until:
                    answer = await client.post("/v1/chat/completions", json=BODY)
                    assert answer.status_code == 200, answer.text
                    if time.time() >= warm_until:
                        done += 1

            await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
        return done

    out.put(asyncio.run(run()))


def measure(workers: int, engine_url: str, base_model: Path, work: Path) -> tuple[float, float]:
    """Requests/s through `hybrid serve --workers N`, and the cores its processes kept busy
    meanwhile (below `workers`: something else, e.g. the load generator, was the limit)."""
    port = free_port()
    config = work / f"hybrid-{workers}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "remote_engines": {"urls": [engine_url]},
                "base_model": str(base_model),
                "adapters": {"registry": str(work / "registry")},
                "gateway": {"port": port, "max_pending_requests": 4096},
            }
        )
    )
    serve = subprocess.Popen(
        [*HYBRID, "serve", str(config), "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url + "/ready")
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        start = time.time() + 1.0
        warm_until, until = start + WARMUP_S, start + WARMUP_S + DURATION_S
        loaders = [
            context.Process(target=_load, args=(url, until, warm_until, out))
            for _ in range(LOADERS)
        ]
        for loader in loaders:
            loader.start()
        meter = CpuMeter(serve.pid)
        time.sleep(max(0.0, warm_until - time.time()))
        used = meter.read()
        time.sleep(max(0.0, until - time.time()))
        used = meter.read() - used
        done = sum(out.get(timeout=DURATION_S + 120) for _ in loaders)
        for loader in loaders:
            loader.join()
        return done / DURATION_S, used / DURATION_S
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(60)


def main() -> None:
    base_model = resolve_base_model(DEFAULT_BASE_MODEL)
    engine_port = free_port()
    stub = subprocess.Popen([sys.executable, "-c", STUB, str(engine_port)])
    engine_url = f"http://127.0.0.1:{engine_port}"
    try:
        wait_up(engine_url + "/health")
        with tempfile.TemporaryDirectory() as work:
            measured = {n: measure(n, engine_url, base_model, Path(work)) for n in (1, 2)}
    finally:
        stub.terminate()
        stub.wait(30)
    rates = {n: rate for n, (rate, _) in measured.items()}
    busy = {n: round(cores, 2) for n, (_, cores) in measured.items()}
    scaling = rates[2] / rates[1]
    rows = [[n, f"{rate:.0f}", busy[n]] for n, rate in rates.items()]
    table = markdown_table(
        ["gateway workers", "requests/s (non-streamed, base)", "cores the gateway used"], rows
    )
    table += (
        f"\n\nScaling 1 -> 2 workers: {scaling:.2f}x on {machine()['cpus']} CPUs (target 1.7x). "
        "Cores the gateway used: CPU seconds of the `hybrid serve` processes per second of the "
        "run; where 2 workers use well under 2 cores, the gateway was not what limited the "
        "rate (the load generator and the engine stub run on the same CPUs)."
    )
    payload = {
        "machine": machine(),
        "requests_per_s": rates,
        "gateway_cores_busy": busy,
        "scaling": scaling,
        "duration_s": DURATION_S,
        "loaders": LOADERS,
        "concurrency": CONCURRENCY,
    }
    write_results("gateway_workers", payload, table)
    print(table)


if __name__ == "__main__":
    main()
