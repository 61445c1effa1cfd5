"""Async clients for vLLM servers: `EngineClient` talks to one, `EngineSet` spreads adapters
over several (the supervised server and/or remote ones). The routing decision itself is the
pure function `serving.engine.routing.choose_replica`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from serving.engine.config import RemoteEngineConfig
from serving.engine.process import EngineProcess
from serving.engine.protocol import (
    Action,
    ModelCard,
    adapters_of,
    check_adapter_name,
    engine_error,
    parse_models,
)
from serving.engine.routing import ReplicaState, choose_replica
from serving.errors import (
    AdapterAlreadyLoaded,
    AdapterNotLoaded,
    EngineRequestError,
    EngineUnavailable,
)

log = logging.getLogger(__name__)


class EngineClient:
    """Async HTTP client for one vLLM OpenAI-compatible server (root URL, without /v1).

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
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

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
        timeout = (
            httpx.Timeout(timeout_s, connect=10.0)
            if timeout_s is not None
            else httpx.USE_CLIENT_DEFAULT
        )
        try:
            response = await self._http.request(method, route, json=payload, timeout=timeout)
        except httpx.TransportError as exc:
            raise self._unavailable(method, route, exc) from None
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
        request = self._http.build_request(
            "POST", route, json=payload, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unavailable("POST", route, exc) from None
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

    async def unload_lora_adapter(self, name: str) -> None:
        """POST /v1/unload_lora_adapter.

        Raises:
            AdapterNotLoaded: the server has no adapter of that name.
            EngineUnavailable: no answer.
        """
        await self._request(
            "POST", "/v1/unload_lora_adapter", "unload", {"lora_name": name}, adapter=name
        )


class AdapterLedger(Protocol):
    """Something that must hear about adapter (un)loads on a replica, e.g. its supervisor
    (`EngineProcess`), which loads them again after a restart."""

    def remember_adapter(self, name: str, path: str | Path) -> None: ...

    def forget_adapter(self, name: str) -> None: ...


@dataclass
class Replica:
    """One server of an engine set and what the set knows about it."""

    client: EngineClient
    ledger: AdapterLedger | None = None
    healthy: bool = True
    adapters: dict[str, str] = field(default_factory=dict)
    """Adapters the replica holds (name -> folder), as last listed or loaded through the set."""

    @property
    def url(self) -> str:
        return self.client.url

    def snapshot(self) -> ReplicaState:
        return ReplicaState(self.url, self.healthy, frozenset(self.adapters))


class EngineSet:
    """One or several vLLM servers serving the same base model.

    `ensure_adapter` picks a replica for an adapter (one that holds it and is healthy, else the
    healthy one with the fewest adapters) and loads it there on demand. Call `refresh` at start
    and whenever a request to a replica failed, to re-learn health and adapters.
    """

    def __init__(self, replicas: Sequence[Replica]):
        if not replicas:
            raise ValueError("an EngineSet needs at least one replica; configure an engine")
        self.replicas = list(replicas)
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def build(
        cls, *, supervised: EngineProcess | None = None, remote: RemoteEngineConfig | None = None
    ) -> EngineSet:
        """The set of the supervised server (started already) and/or remote servers."""
        replicas = []
        if supervised is not None:
            replicas.append(
                Replica(
                    EngineClient(supervised.url, api_key=supervised.api_key),
                    ledger=supervised,
                    adapters=supervised.adapters,
                )
            )
        if remote is not None:
            replicas += [
                Replica(EngineClient(url, api_key=remote.api_key, timeout_s=remote.timeout_s))
                for url in remote.urls
            ]
        return cls(replicas)

    async def aclose(self) -> None:
        await asyncio.gather(*(r.client.aclose() for r in self.replicas))

    def states(self) -> list[ReplicaState]:
        return [replica.snapshot() for replica in self.replicas]

    async def refresh(self) -> list[ReplicaState]:
        """Ask every replica for its models (concurrently); mark the silent ones unhealthy."""

        async def one(replica: Replica) -> None:
            try:
                replica.adapters = await replica.client.adapters()
                replica.healthy = True
            except (EngineUnavailable, EngineRequestError):
                replica.healthy = False

        await asyncio.gather(*(one(r) for r in self.replicas))
        return self.states()

    def mark_unhealthy(self, url: str) -> None:
        """A request to `url` failed: route around it until the next `refresh`."""
        for replica in self.replicas:
            if replica.url == url:
                replica.healthy = False

    def pick(self, adapter: str | None = None) -> Replica:
        """The replica for a request to `adapter` (None: the base model), without loading."""
        return self.replicas[choose_replica(self.states(), adapter).index]

    async def ensure_adapter(self, name: str, path: str | Path) -> Replica:
        """The replica that serves `name`, loading the adapter from `path` there if needed.

        A replica that does not answer is marked unhealthy and the next choice is tried.

        Raises:
            AdapterLoadError: the chosen replica refused the folder (not retried elsewhere:
                every replica would refuse it the same way).
            NoHealthyEngine: no replica is healthy.
        """
        check_adapter_name(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:  # two first requests for one adapter load it once
            while True:
                choice = choose_replica(self.states(), name)
                replica = self.replicas[choice.index]
                if not choice.needs_load:
                    held = replica.adapters.get(name)
                    if held in (None, str(path)):
                        return replica
                    # Another folder under this name (another registry sharing the engine, or a
                    # copy from before a rebuild): its weights are not the ones asked for.
                    log.warning(
                        "%s holds adapter %s from %s, not %s: loading it again",
                        replica.url,
                        name,
                        held,
                        path,
                    )
                    try:
                        await replica.client.unload_lora_adapter(name)
                    except AdapterNotLoaded:
                        pass
                    except EngineUnavailable:
                        replica.healthy = False
                        continue
                    replica.adapters.pop(name, None)
                try:
                    await replica.client.load_lora_adapter(name, path)
                except AdapterAlreadyLoaded:
                    pass  # loaded behind our back (e.g. by a supervisor restart): fine
                except EngineUnavailable:
                    replica.healthy = False
                    continue
                replica.adapters[name] = str(path)
                if replica.ledger is not None:
                    replica.ledger.remember_adapter(name, path)
                return replica

    async def unload_adapter(self, name: str) -> list[str]:
        """Unload `name` from every replica known to hold it; return their URLs.

        Raises:
            AdapterNotLoaded: no replica holds it.
        """
        holders = [r for r in self.replicas if name in r.adapters]
        if not holders:
            raise AdapterNotLoaded(
                f"no replica holds adapter '{name}' (replicas: "
                f"{', '.join(r.url for r in self.replicas)}); call refresh() if it was loaded "
                "by another client",
                url=", ".join(r.url for r in self.replicas),
                status_code=404,
            )
        for replica in holders:
            try:
                await replica.client.unload_lora_adapter(name)
            except AdapterNotLoaded:
                pass  # already gone there (e.g. the replica restarted)
            except EngineUnavailable:
                replica.healthy = False
            replica.adapters.pop(name, None)
            if replica.ledger is not None:
                replica.ledger.forget_adapter(name)
        return [r.url for r in holders]
