"""The async HTTP client for one vLLM server, the only one that talks to vLLM's API (the
supervisor, `EngineProcess`, only polls /health and /v1/models for readiness). `EngineSet` (replicas.py) spreads requests
and adapters over several servers through it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx

from serving.engine.protocol import (
    Action,
    ModelCard,
    adapters_of,
    bearer,
    check_adapter_name,
    engine_error,
    parse_models,
)
from serving.engine.transport import AiohttpTransport
from serving.errors import EngineRequestError, EngineUnavailable

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0


class EngineClient:
    """Async HTTP client for one vLLM OpenAI-compatible server (root URL, without /v1).

    Requests are `httpx.Request`s handed straight to a transport (aiohttp's pool by default,
    serving/engine/transport.py; tests pass httpx's `MockTransport` or `ASGITransport`),
    without httpx's client layer: the engine's API needs none of its cookies, redirects, auth
    flows or URL merging, which together cost the gateway about as much as the rest of a
    request's work (bench/gateway_cost.py).

    Errors come back typed: `EngineUnavailable` when the server cannot be reached,
    `AdapterLoadError` / `AdapterAlreadyLoaded` / `AdapterNotLoaded` with vLLM's own message,
    `EngineRequestError` for anything else the server refuses.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self._transport = transport if transport is not None else AiohttpTransport()
        self._headers = bearer(api_key)
        self._timeout = httpx.Timeout(timeout_s).as_dict()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(
        self,
        method: str,
        route: str,
        payload: dict | None = None,
        *,
        timeout_s: float | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """`payload` as JSON to `route`; the response, read unless `stream`.

        Raises:
            EngineUnavailable: no answer, or the connection broke before the answer was read.
        """
        timeout = (
            self._timeout
            if timeout_s is None
            else httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S).as_dict()
        )
        request = httpx.Request(
            method,
            self.url + route,
            headers=self._headers,
            json=payload,
            extensions={"timeout": timeout},
        )
        try:
            response = await self._transport.handle_async_request(request)
            response.request = request
            if not stream:
                await response.aread()  # closes it too
        except httpx.TransportError as exc:
            raise self._unavailable(method, route, exc) from None
        return response

    async def _request(
        self,
        method: str,
        route: str,
        action: Action,
        payload: dict | None = None,
        adapter: str | None = None,
        path: str | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        response = await self._send(method, route, payload, timeout_s=timeout_s)
        if response.status_code >= 400:
            raise engine_error(
                response.status_code,
                response.text,
                url=self.url,
                action=action,
                adapter=adapter,
                path=path,
            )
        return response

    async def generate(self, route: str, payload: dict, *, timeout_s: float) -> dict:
        """POST an OpenAI request (e.g. /v1/chat/completions, not streamed) and return its JSON.

        Raises:
            EngineUnavailable: no answer, or the connection broke before the answer was complete.
            EngineRequestError: vLLM refused the request (its status and message are kept).
        """
        response = await self._request("POST", route, "generate", payload, timeout_s=timeout_s)
        return response.json()

    async def open_stream(self, route: str, payload: dict, *, timeout_s: float) -> httpx.Response:
        """POST a streamed OpenAI request and return the open response, status checked, for the
        caller to read with `aiter_lines()` and to `aclose()` (closing it early makes vLLM abort
        the generation).

        Raises:
            EngineUnavailable / EngineRequestError: as `generate`.
        """
        response = await self._send("POST", route, payload, timeout_s=timeout_s, stream=True)
        if response.status_code >= 400:
            body = (await response.aread()).decode("utf-8", "replace")
            await response.aclose()
            raise engine_error(response.status_code, body, url=self.url, action="generate")
        return response

    async def count_tokens(self, model: str, payload: dict) -> int:
        """Tokens of a prompt as the engine's tokenizer counts them (POST /tokenize): `payload`
        holds `messages` (rendered with the chat template, `tools` too) or a `prompt`.

        Raises:
            EngineUnavailable / EngineRequestError: as `generate`.
        """
        response = await self._request("POST", "/tokenize", "generate", {**payload, "model": model})
        count = response.json().get("count")
        if not isinstance(count, int):
            raise EngineRequestError(
                f"engine at {self.url} answered /tokenize without a count",
                url=self.url,
                status_code=response.status_code,
            )
        return count

    def _unavailable(self, method: str, route: str, exc: Exception) -> EngineUnavailable:
        return EngineUnavailable(
            f"engine at {self.url} did not answer {method} {route} ({type(exc).__name__}: "
            f"{exc or 'no details'}); check that the vLLM server runs and is reachable",
            url=self.url,
        )

    async def health(self) -> None:
        """Return when GET /health answers 200.

        Raises:
            EngineUnavailable: no answer.
            EngineRequestError: any other status (vLLM answers 503 when its engine core died).
        """
        await self._request("GET", "/health", "health")

    async def is_healthy(self) -> bool:
        try:
            await self.health()
        except (EngineUnavailable, EngineRequestError):
            return False
        return True

    async def list_models(self) -> list[ModelCard]:
        """GET /v1/models: the base model and every loaded adapter (adapters have a parent)."""
        response = await self._request("GET", "/v1/models", "models")
        try:
            return parse_models(response.json())
        except ValueError as exc:
            raise EngineRequestError(
                f"engine at {self.url} answered /v1/models with an unexpected body ({exc}); "
                "is this URL a vLLM OpenAI-compatible server?",
                url=self.url,
                status_code=response.status_code,
            ) from None

    async def adapters(self) -> dict[str, str]:
        """Adapters the server holds now, name -> folder."""
        return adapters_of(await self.list_models())

    async def load_lora_adapter(self, name: str, path: str | Path) -> None:
        """POST /v1/load_lora_adapter. `path` is read by the server, on the server's machine.

        Raises:
            InvalidAdapterName: unusable name (checked before any request).
            AdapterAlreadyLoaded: the server already has an adapter of that name.
            AdapterLoadError: vLLM refused the folder; the message has vLLM's reason and a fix.
            EngineUnavailable: no answer.
        """
        check_adapter_name(name)
        folder = str(path)
        await self._request(
            "POST",
            "/v1/load_lora_adapter",
            "load",
            {"lora_name": name, "lora_path": folder},
            adapter=name,
            path=folder,
        )

    async def fetch_lora_adapter(self, name: str) -> None:
        """Make a server that runs Hybrid's LoRA resolver plugin fetch and load adapter `name`
        (`name@version`) from the gateway. vLLM 0.32 has no route that loads by name: its
        resolvers run when a request names an unknown model, so this sends the cheapest such
        request, POST /tokenize (no generation). A name the server holds already is a no-op.

        Raises:
            InvalidAdapterName: unusable name (checked before any request).
            AdapterLoadError: no resolver knows the name (404), or the fetch or the load failed
                (400, with the resolver's reason).
            EngineUnavailable: no answer.
        """
        check_adapter_name(name)
        await self._request(
            "POST", "/tokenize", "fetch", {"model": name, "prompt": "Hi"}, adapter=name
        )

    async def unload_lora_adapter(self, name: str) -> None:
        """POST /v1/unload_lora_adapter.

        Raises:
            AdapterNotLoaded: the server has no adapter of that name.
            EngineUnavailable: no answer.
        """
        await self._request(
            "POST", "/v1/unload_lora_adapter", "unload", {"lora_name": name}, adapter=name
        )


def run_sync(coro: Coroutine[object, object, T]) -> T:
    """Run `coro` to its end from sync code, also from a thread whose event loop runs (a
    `start()` called from async code): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
