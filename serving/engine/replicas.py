"""Several vLLM servers as one: `EngineSet` picks the replica for each request (the pure
function `serving.engine.routing.choose_replica` decides), loads adapters where they are
needed, routes around a replica that does not answer (`failover`), and keeps what it loaded
into a supervised server in an `AdapterLedger`, which loads it again after a restart. Merged
engines (merged.py) sit beside the replicas: each serves one adapter version as its base
model, and is used only while its served names prove it serves the registered weights."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from serving.engine.client import EngineClient
from serving.engine.config import RemoteEngineConfig
from serving.engine.ledger import AdapterLedger
from serving.engine.merged import merged_problem
from serving.engine.process import EngineProcess
from serving.engine.protocol import check_adapter_name
from serving.engine.routing import ReplicaState, choose_merged, choose_replica
from serving.errors import (
    AdapterAlreadyLoaded,
    AdapterNotLoaded,
    EngineRequestError,
    EngineUnavailable,
    NoHealthyEngine,
)

log = logging.getLogger("serving.engine")
T = TypeVar("T")


@dataclass
class Replica:
    """One server of an engine set and what the set knows about it."""

    client: EngineClient
    ledger: AdapterLedger | None = None
    """For a supervised server: what the set loaded there, loaded again after a restart."""
    healthy: bool = True
    adapters: dict[str, str] = field(default_factory=dict)
    """Adapters the replica holds (name -> folder), as last listed or loaded through the set."""
    fetches: bool = False
    """The replica cannot read our registry folder: it fetches adapters from the gateway by
    name (Hybrid's LoRA resolver plugin) and lists them under its own cache folder."""
    serves: str | None = None
    """A merged engine: the adapter version (`name@version`) it serves as its base model."""
    digest: str = ""
    """A merged engine: the digest of the registered version's adapter files, which its
    served names must carry (merged.py)."""
    problem: str | None = None
    """A merged engine: why it is not used, as last checked (None: it is used)."""

    @property
    def url(self) -> str:
        return self.client.url

    def serving(self, name: str, path: str | Path) -> Replica:
        """This replica serves adapter `name` from `path` for the set: a supervised server
        must load it again after a restart."""
        if self.ledger is not None:
            self.ledger.remember(name, path)
        return self

    def snapshot(self) -> ReplicaState:
        held = {self.serves} if self.serves is not None else self.adapters
        return ReplicaState(self.url, self.healthy, frozenset(held))

    async def check_merged(self) -> None:
        """A merged engine: healthy when it answers and serves what it must (logged when
        that changes)."""
        assert self.serves is not None
        try:
            problem = merged_problem(
                await self.client.list_models(), self.serves, self.digest, self.url
            )
        except (EngineUnavailable, EngineRequestError) as exc:
            problem = str(exc)
        if problem != self.problem:
            if problem is None:
                log.info("merged engine %s serves %s: requests go there", self.url, self.serves)
            else:
                log.error("merged engine not used, requests take the LoRA path: %s", problem)
        self.problem = problem
        self.healthy = problem is None


class EngineSet:
    """One or several vLLM servers serving the same base model.

    `ensure_adapter` picks a replica for an adapter (one that holds it and is healthy, else the
    healthy one with the fewest adapters) and loads it there on demand. Call `refresh` at start
    and whenever a request to a replica failed, to re-learn health and adapters.
    """

    def __init__(self, replicas: Sequence[Replica], merged: Sequence[Replica] = ()):
        """
        Args:
            replicas: servers of the base model, which load adapters.
            merged: merged engines (`Replica.serves` set), used for the version each serves.
        """
        if not replicas:
            raise ValueError("an EngineSet needs at least one replica; configure an engine")
        self.replicas = list(replicas)
        self.merged = list(merged)
        if any(m.serves is None for m in self.merged):
            raise ValueError("a merged engine must name the adapter version it serves")
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
                    ledger=AdapterLedger(supervised).attach(),
                )
            )
        if remote is not None:
            replicas += [
                Replica(
                    EngineClient(url, api_key=remote.api_key, timeout_s=remote.timeout_s),
                    fetches=remote.fetch_adapters,
                )
                for url in remote.urls
            ]
        return cls(replicas)

    async def aclose(self) -> None:
        """Close the clients; a supervised server no longer gets this set's adapters back after
        a restart."""
        for replica in self.replicas:
            if replica.ledger is not None:
                replica.ledger.detach()
        await asyncio.gather(*(r.client.aclose() for r in [*self.replicas, *self.merged]))

    def states(self) -> list[ReplicaState]:
        return [replica.snapshot() for replica in self.replicas]

    def merged_states(self) -> list[ReplicaState]:
        """The merged engines, each holding the one version it serves."""
        return [replica.snapshot() for replica in self.merged]

    def merged_for(self, engine_name: str) -> Replica | None:
        """A healthy merged engine that serves `engine_name`, or None (the LoRA path)."""
        index = choose_merged(self.merged_states(), engine_name)
        return None if index is None else self.merged[index]

    async def refresh(self) -> list[ReplicaState]:
        """Ask every replica for its models (concurrently); mark the silent ones unhealthy."""

        async def one(replica: Replica) -> None:
            try:
                replica.adapters = await replica.client.adapters()
                replica.healthy = True
            except (EngineUnavailable, EngineRequestError):
                replica.healthy = False

        await asyncio.gather(
            *(one(r) for r in self.replicas), *(m.check_merged() for m in self.merged)
        )
        return self.states()

    async def failover(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` (pick a replica, send it a request) again when the replica it picked
        does not answer, up to once per replica: that replica is marked unhealthy first, so the
        next pick is another one. Only for requests that nothing was generated for yet, so
        that a retry is safe.

        Raises:
            EngineUnavailable: the last replica tried did not answer either.
            NoHealthyEngine: no replica left to try (not retried).
        """
        for left in reversed(range(len(self.replicas) + len(self.merged))):
            try:
                return await attempt()
            except NoHealthyEngine:
                raise
            except EngineUnavailable as exc:
                self.mark_unhealthy(exc.url)
                if not left:
                    raise
        raise AssertionError("unreachable: an EngineSet has at least one replica")

    def mark_unhealthy(self, url: str) -> None:
        """A request to `url` failed: route around it until the next `refresh`."""
        for replica in [*self.replicas, *self.merged]:
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
                    # A fetching replica holds it in its own cache folder, fetched by this name.
                    if held in (None, str(path)) or replica.fetches:
                        return replica.serving(name, path)
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
                    if replica.fetches:
                        await replica.client.fetch_lora_adapter(name)
                    else:
                        await replica.client.load_lora_adapter(name, path)
                except AdapterAlreadyLoaded:
                    pass  # loaded behind our back (e.g. by a supervisor restart): fine
                except EngineUnavailable:
                    replica.healthy = False
                    continue
                replica.adapters[name] = str(path)
                return replica.serving(name, path)

    def forget(self, name: str) -> None:
        """Another client unloaded `name`: no replica is assumed to hold it any longer (the
        next `ensure_adapter` loads it again; "already loaded" is fine there)."""
        for replica in self.replicas:
            replica.adapters.pop(name, None)

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
                replica.ledger.forget(name)
        return [r.url for r in holders]
