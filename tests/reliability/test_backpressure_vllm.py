"""Backpressure against the real vLLM server: past `max_pending_requests` the gateway answers 429
with Retry-After at once (OpenAI error shape) instead of queueing, the requests it took all
finish, and it serves again as soon as the load drops."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineSet
from serving.gateway import GatewayConfig, GatewayState, create_app
from tests.helpers.gateway import ServerThread
from tests.helpers.reliability import record

pytestmark = [pytest.mark.vllm, pytest.mark.reliability]

LIMIT = 4
BURST = 24
BODY = {
    "model": "tiny-llama",
    "messages": [{"role": "user", "content": "Count slowly."}],
    "max_tokens": 200,
    "min_tokens": 200,
}


def test_past_the_queue_depth_requests_get_429_then_service_recovers(
    vllm_engine, tiny_llama_dir, tmp_path
):
    registry = AdapterRegistry(tmp_path / "registry", describe_base(tiny_llama_dir), max_rank=8)
    manager = AdapterManager(
        registry, EngineSet.build(supervised=vllm_engine), vllm_engine.config.base_model_name
    )
    state = GatewayState.build(GatewayConfig(max_pending_requests=LIMIT), manager)

    async def burst(url: str) -> list[tuple[int, float, httpx.Response]]:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:

            async def one() -> tuple[int, float, httpx.Response]:
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=BODY)
                return response.status_code, time.perf_counter() - started, response

            return await asyncio.gather(*(one() for _ in range(BURST)))

    with ServerThread(create_app(state)) as server:
        results = asyncio.run(burst(server.url))
        accepted = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 429]
        after = httpx.post(server.url + "/v1/chat/completions", json=BODY, timeout=300)

    assert len(accepted) + len(refused) == BURST, [r[0] for r in results]
    assert LIMIT <= len(accepted) < BURST and refused
    for _, _, response in refused:
        error = response.json()["error"]
        assert error["code"] == "too_many_requests" and error["type"]
        assert int(response.headers["retry-after"]) >= 1
    slowest_refusal = max(seconds for _, seconds, _ in refused)
    quickest_answer = min(seconds for _, seconds, _ in accepted)
    assert slowest_refusal < quickest_answer, "refusals waited for the engine"
    assert after.status_code == 200
    record(
        "Load",
        f"Backpressure: {BURST} requests at once, max_pending_requests={LIMIT}",
        accepted=len(accepted),
        refused_429=len(refused),
        slowest_refusal_ms=round(slowest_refusal * 1000),
        quickest_answer_ms=round(quickest_answer * 1000),
        served_after=after.status_code == 200,
    )
