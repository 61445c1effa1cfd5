"""The middleware the supervisor hands to vLLM: every route but /health needs the engine key
(vLLM's own --api-key leaves /invocations, /metrics, /tokenize open). The real server is tested
in test_serve_cli_vllm.py; here the ASGI logic on a stand-in app."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from serving.engine.launch import GUARD_DIR


def guarded_app(monkeypatch, key: str | None):
    monkeypatch.syspath_prepend(str(GUARD_DIR))
    if key is None:
        monkeypatch.delenv("VLLM_API_KEY", raising=False)
    else:
        monkeypatch.setenv("VLLM_API_KEY", key)
    from hybrid_engine_guard import EngineGuard

    async def ok(request):
        return PlainTextResponse("served " + request.url.path)

    paths = ["/health", "/invocations", "/metrics", "/v1/load_lora_adapter", "/tokenize"]
    app = Starlette(routes=[Route(p, ok, methods=["GET", "POST", "OPTIONS"]) for p in paths])
    return EngineGuard(app)


def call(app, method: str, path: str, headers: dict | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


@pytest.mark.parametrize("path", ["/invocations", "/metrics", "/v1/load_lora_adapter", "/tokenize"])
@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
def test_every_route_but_health_needs_the_key(monkeypatch, path, method):
    app = guarded_app(monkeypatch, "s3cret")
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        refused = call(app, method, path, headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert "s3cret" not in refused.text
    served = call(app, method, path, {"Authorization": "Bearer s3cret"})
    assert served.status_code == 200 and served.text == "served " + path


def test_health_stays_open_and_no_key_means_no_guard(monkeypatch):
    assert call(guarded_app(monkeypatch, "s3cret"), "GET", "/health").status_code == 200
    assert call(guarded_app(monkeypatch, None), "POST", "/invocations").status_code == 200
