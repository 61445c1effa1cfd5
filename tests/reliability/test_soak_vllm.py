"""Soak: `hybrid serve` (a real subprocess, so its memory can be read) attached to the session's
vLLM server, two apps with their own knowledge bases and adapters plus a bare adapter and the
base model, many concurrent clients (the official openai client, streaming and not, some leaving
mid-stream) while adapters are promoted and unloaded every few seconds.

Holds when: no request fails; every greedy answer equals the first answer its version gave to
the same question (a request never reaches a half-swapped adapter); vLLM is left with nothing
running or waiting (clients that left were cancelled at the engine); no request is left in
flight at the gateway; and the gateway's resident memory grows by less than MEMORY_BOUND_MIB
from the end of the warm-up to the end of the run.

HYBRID_SOAK_S sets the duration (default 60 s; `make bench` runs it longer).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from bench.common import percentile
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from tests.conftest import EXAMPLES
from tests.helpers.adapters import random_lora
from tests.helpers.gateway import free_port, start_serve, wait_ready
from tests.helpers.metrics import metric_total
from tests.helpers.reliability import record

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.reliability,
    pytest.mark.usefixtures("clean_vllm_engine"),
]

SOAK_S = float(os.environ.get("HYBRID_SOAK_S", "60"))
CLIENTS = 8
SWAP_EVERY_S = 3.0
MEMORY_BOUND_MIB = 64
NEW_TOKENS = 12
LEAVE_EVERY = 5  # every 5th streamed request of a client is abandoned after its first chunk
BRANDS = EXAMPLES / "branded-chatbot" / "brands"
QUESTIONS = {
    "brewbird": [
        "How do I descale my BrewBird machine?",
        "What is the warranty on the BrewBird?",
        "How long does shipping take?",
    ],
    "kettleandco": [
        "How do I clean the steam wand?",
        "What does the warranty of Kettle & Co cover?",
        "Which water should I use?",
    ],
}
GENERIC = ["Tell me something about coffee.", "What is the capital of France?"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    first_chunk: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    answers: dict[tuple[str, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    by_model: Counter = field(default_factory=Counter)
    streamed: int = 0
    left: int = 0


@pytest.fixture(scope="module")
def served(vllm_engine, tiny_llama_dir, tmp_path_factory):
    """`hybrid serve CONFIG` with two apps, three adapters (two with two versions), attached to
    the shared vLLM server."""
    root = tmp_path_factory.mktemp("soak")
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root / "chroma"))
    for brand in QUESTIONS:
        catalog.create(brand).ingest([BRANDS / brand / "kb"], progress=False)
    del catalog
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), max_rank=8)
    versions = [("brewbird-voice", "v1"), ("brewbird-voice", "v2"), ("kettleandco-voice", "v1")]
    versions += [("kettleandco-voice", "v2"), ("plain-voice", "v1")]
    for seed, (name, version) in enumerate(versions, start=40):
        # alpha 128 on rank 8: the adapter dominates the logits, so greedy answers do not move
        # with whatever else shares the engine's batch
        folder = random_lora(
            tiny_llama_dir, root / "lora" / f"{name}-{version}", seed=seed, alpha=128
        )
        registry.register(folder, name, version, promote=version == "v1")
    apps = root / "apps"
    apps.mkdir()
    for brand in QUESTIONS:
        spec = {
            "name": f"{brand}-support",
            "knowledge_base": brand,
            "adapter": f"{brand}-voice",
            "persona": f"You are the support assistant of {brand}.",
            "retrieval": {"top_k": 2, "mode": "hybrid"},
            "no_context": {"message": f"{brand} has nothing on that."},
        }
        (apps / f"{brand}.yaml").write_text(yaml.safe_dump(spec))
    port = free_port()
    config = root / "hybrid.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"mode": "embedded", "path": "chroma"},
                "remote_engines": {"urls": [vllm_engine.url], "api_key": vllm_engine.api_key},
                "base_model": str(tiny_llama_dir),
                "adapters": {"registry": "registry"},
                "gateway": {"port": port, "max_pending_requests": 256},
                "apps": ["apps"],
            }
        )
    )
    log = root / "serve.log"
    proc = start_serve(config, log)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log, 180)
    try:
        yield url, proc, vllm_engine
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def plan(index: int, step: int) -> tuple[str, str, bool]:
    """Client `index`'s `step`-th request: (model, question, stream)."""
    rng = random.Random(index * 10_000 + step)
    brand = rng.choice(sorted(QUESTIONS))
    model = rng.choice(
        [f"{brand}-support", f"{brand}-support", f"{brand}-voice", "plain-voice", "tiny-llama"]
    )
    question = rng.choice(QUESTIONS[brand] + (GENERIC if "support" not in model else []))
    return model, question, rng.random() < 0.5


async def one_client(url: str, index: int, stop: threading.Event, tally: Tally) -> None:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    step = 0
    while not stop.is_set():
        model, question, stream = plan(index, step)
        step += 1
        kwargs = dict(
            model=model,
            messages=[{"role": "user", "content": question}],
            max_tokens=NEW_TOKENS,
            temperature=0,
            extra_body={"min_tokens": NEW_TOKENS},
        )
        started = time.perf_counter()
        try:
            if stream:
                tally.streamed += 1
                chunks = await client.chat.completions.create(stream=True, **kwargs)
                leave = tally.streamed % LEAVE_EVERY == 0
                first = True
                async for _chunk in chunks:
                    if first:
                        tally.first_chunk.append(time.perf_counter() - started)
                        first = False
                    if leave:
                        break
                await chunks.close()
                if leave:
                    tally.left += 1
                    continue
            else:
                answer = await client.chat.completions.create(**kwargs)
                notes = (answer.model_extra or {}).get("hybrid") or {}
                version = notes.get("served_by") or answer.model
                if version != "tiny-llama":  # adapters dominate their logits: greedy is stable
                    tally.answers[(model, version, question)].add(answer.choices[0].message.content)
            tally.latencies.append(time.perf_counter() - started)
            tally.by_model[model] += 1
        except Exception as exc:  # counted, not raised: the test reports every failure
            tally.failures.append(f"{model} stream={stream}: {type(exc).__name__}: {exc}")
    await client.close()


SWAPS = [
    ("POST", "/adapters/brewbird-voice/promote", {"version": "v2"}),
    ("POST", "/adapters/kettleandco-voice/unload", None),
    ("POST", "/adapters/plain-voice/unload", None),
    ("POST", "/adapters/kettleandco-voice/promote", {"version": "v2"}),
    ("POST", "/adapters/brewbird-voice/unload", None),
    ("POST", "/adapters/brewbird-voice/promote", {"version": "v1"}),
    ("POST", "/adapters/kettleandco-voice/promote", {"version": "v1"}),
]


def engine_busy(engine) -> float:
    return metric_total(
        engine.url,
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        api_key=engine.api_key,
    )


def test_soak_many_clients_while_adapters_swap(served):
    url, proc, engine = served
    warm = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    for model in ("brewbird-support", "kettleandco-support", "plain-voice", "tiny-llama"):
        warm.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": QUESTIONS["brewbird"][0]}],
            max_tokens=NEW_TOKENS,
        )

    tally, stop = Tally(), threading.Event()

    async def clients() -> None:
        await asyncio.gather(*(one_client(url, i, stop, tally) for i in range(CLIENTS)))

    memory: list[float] = []
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(1.0):
            memory.append(rss_mib(proc.pid))

    runner = threading.Thread(target=asyncio.run, args=(clients(),))
    sampler = threading.Thread(target=sample, daemon=True)
    runner.start()
    time.sleep(min(10.0, SOAK_S / 6))  # warm-up under load: caches, pools, first compiles
    start_mib = rss_mib(proc.pid)
    sampler.start()
    swaps: list[tuple[str, int]] = []
    swap_s: list[float] = []
    started = time.monotonic()
    try:
        # one swap every SWAP_EVERY_S on the clock (a promote waits for the old version's
        # requests to drain, so the swaps themselves take a while)
        while (next_at := started + (len(swaps) + 1) * SWAP_EVERY_S) < started + SOAK_S:
            time.sleep(max(0.0, next_at - time.monotonic()))
            method, path, body = SWAPS[len(swaps) % len(SWAPS)]
            begun = time.perf_counter()
            response = httpx.request(method, url + "/admin" + path, json=body, timeout=120)
            swap_s.append(time.perf_counter() - begun)
            swaps.append((path, response.status_code))
        time.sleep(max(0.0, started + SOAK_S - time.monotonic()))
    finally:
        stop.set()
        runner.join(timeout=180)
        sampler_stop.set()
    end_mib = rss_mib(proc.pid)

    deadline = time.monotonic() + 20
    while engine_busy(engine) and time.monotonic() < deadline:
        time.sleep(0.5)
    busy_after = engine_busy(engine)
    in_flight = metric_total(url, "hybrid_requests_in_flight")
    unstable = {key: texts for key, texts in tally.answers.items() if len(texts) > 1}
    completed = len(tally.latencies)
    figures = dict(
        duration_s=round(SOAK_S),
        clients=CLIENTS,
        requests=completed + tally.left,
        streamed=tally.streamed,
        left_mid_stream=tally.left,
        errors=len(tally.failures),
        swaps=len(swaps),
        swap_p50_ms=round(percentile(swap_s, 0.5) * 1000),
        p50_ms=round(percentile(tally.latencies, 0.5) * 1000),
        p99_ms=round(percentile(tally.latencies, 0.99) * 1000),
        first_chunk_p50_ms=round(percentile(tally.first_chunk, 0.5) * 1000),
        gateway_rss_start_mib=round(start_mib),
        gateway_rss_end_mib=round(end_mib),
        gateway_rss_peak_mib=round(max(memory, default=end_mib)),
        rss_bound_mib=MEMORY_BOUND_MIB,
    )
    print("\nsoak:", figures, dict(tally.by_model))
    record("Load", "Soak: 2 apps + 3 adapters + base, promotes/unloads every 3 s", **figures)

    assert tally.failures == [], tally.failures[:5]
    assert all(status == 200 for _, status in swaps), swaps
    assert len(swaps) >= 0.8 * SOAK_S / SWAP_EVERY_S
    assert completed >= 5 * CLIENTS and tally.left >= 1
    assert set(tally.by_model) >= {"brewbird-support", "kettleandco-support", "plain-voice"}
    assert unstable == {}, f"answers changed for one version: {unstable}"
    assert busy_after == 0, "vLLM still runs requests nobody waits for"
    assert in_flight == 0
    assert end_mib - start_mib < MEMORY_BOUND_MIB, (start_mib, end_mib)
