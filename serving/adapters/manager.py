"""Adapters at run time: resolve a requested model to what the engine serves, load on demand,
count requests in flight, and load / unload / promote without failing a request.

Every registered version is served under its own engine name `name@version`, so vLLM's prefix
cache (keyed by adapter name) never mixes versions. A request resolves `name` to the current
version once, when it starts, and holds a `Lease` on that engine name until its last byte is
sent. Promoting loads the new version first, then switches the registry's pointer (one atomic
file rename), then unloads the old version once its leases are released: requests in flight
finish on the old version, new ones get the new one, none fails.

One `asyncio.Lock` per engine name orders a load against an unload of the same name: a request
that arrives while its version drains for an unload waits, then loads it again. With several
gateway worker processes, `SharedLeases` (serving/adapters/leases.py) extends both across them.

Why one module: leases, loads, unloads and promotes keep one ordering (per-name gate, drain,
registry switch, unload generation); split over modules, each half would rely on invariants
kept in the other. The lock mechanics themselves live in leases.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from serving.adapters.errors import AdapterNotFound, AdapterRejected
from serving.adapters.leases import DrainTimeout, Hold, SharedLeases
from serving.adapters.registry import AdapterRegistry, AdapterVersion
from serving.engine.replicas import EngineSet, Replica
from serving.errors import (
    AdapterLoadError,
    AdapterNotLoaded,
    EngineRequestError,
    EngineUnavailable,
    ServingError,
)

log = logging.getLogger("serving.adapters")


class AdapterBusy(ServingError):
    """An adapter still had requests in flight when its drain timeout ran out."""


@dataclass(frozen=True)
class Target:
    """What a requested model id resolves to."""

    requested: str
    engine_name: str
    """The name the engine serves it under: the base model's name, or `name@version`."""
    adapter: AdapterVersion | None = None

    @property
    def is_base(self) -> bool:
        return self.adapter is None


@dataclass
class Lease:
    """A request's hold on a served model; `release()` (idempotent) when its answer is sent."""

    target: Target
    replica: Replica
    _manager: AdapterManager = field(repr=False)
    _hold: Hold | None = field(default=None, repr=False)
    _released: bool = False

    @property
    def merged(self) -> bool:
        """Served by a merged engine (the fast path), not by a LoRA on a replica."""
        return self.replica.serves is not None

    def release(self) -> None:
        if not self._released:
            self._released = True
            if self._hold is not None:
                self._hold.release()
            self._manager._release(_counted_as(self.target.engine_name, self.merged))


@dataclass(frozen=True)
class Promotion:
    name: str
    previous: str | None
    current: str
    retiring: bool
    """Whether the previous version is being unloaded once its requests in flight finish."""


class AdapterManager:
    """Registry + engines: the one object the gateway asks about adapters."""

    def __init__(
        self,
        registry: AdapterRegistry,
        engines: EngineSet,
        base_name: str,
        *,
        drain_timeout_s: float = 300.0,
        unload_previous: bool = True,
        shared: SharedLeases | None = None,
    ):
        """
        Args:
            shared: leases shared with the gateway's other worker processes; None (one
                process): counted in memory.
        """
        self.registry = registry
        self.engines = engines
        self.base_name = base_name
        self.drain_timeout_s = drain_timeout_s
        self.unload_previous = unload_previous
        self._in_flight: Counter[str] = Counter()
        self._released = asyncio.Event()
        self._gates: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task] = set()
        self.shared = shared
        self._generations: dict[str, int] = {}
        """Per engine name, the unload generation this worker's engine view is up to date with."""
        self.on_lease: Callable[[str, int], None] | None = None
        """Told (engine name, +1) when a lease is taken and (engine name, -1) when it is
        released; the gateway counts leases in its metrics there, which its worker processes
        share (`in_flight` in /admin/adapters sums them)."""

    # ---- resolution and leases ---------------------------------------------------------------

    def resolve(self, model: str) -> Target:
        """`base` -> the base model; `name` -> its current version; `name@v` -> that version.

        Raises:
            AdapterNotFound: no such adapter or version (the message lists what exists).
        """
        if model == self.base_name:
            return Target(model, self.base_name)
        try:
            resolved = self.registry.resolve(model)
        except AdapterNotFound as exc:
            raise AdapterNotFound(
                f"model '{model}' does not exist: {exc}; the base model is '{self.base_name}'"
            ) from None
        return Target(model, resolved.adapter.engine_name, resolved.adapter)

    async def lease(self, model: str) -> Lease:
        """Resolve `model`, make sure an engine serves it (loading it on demand), and count the
        request in flight until the lease is released.

        Raises:
            AdapterNotFound: unknown model.
            AdapterLoadError: the engine refused the adapter folder.
            EngineUnavailable / NoHealthyEngine: no engine can take the request.
        """
        while True:
            target = self.resolve(model)
            if target.is_base:
                replica = self.engines.pick(None)
                self._took(target.engine_name)
                return Lease(target, replica, self)
            assert target.adapter is not None
            merged = self.merged_engine(target.adapter)
            if merged is not None:  # nothing to load or drain there: no gate, no hold
                self._in_flight[_counted_as(target.engine_name, merged=True)] += 1
                return Lease(target, merged, self)
            async with self._gate(target.engine_name):
                if self.resolve(model).engine_name != target.engine_name:
                    continue  # promoted while we waited: serve what is current now
                assert target.adapter is not None
                hold = await self._hold(target.engine_name)
                # Held before this check: a promote elsewhere that switched after it drains us.
                if hold is not None and self.resolve(model).engine_name != target.engine_name:
                    hold.release()
                    continue  # promoted by another worker meanwhile
                try:
                    replica = await self._ensure(target.adapter)
                except BaseException:
                    if hold is not None:
                        hold.release()
                    raise
                self._took(target.engine_name)
                return Lease(target, replica, self, hold)

    def merged_engine(self, adapter: AdapterVersion) -> Replica | None:
        """The merged engine that serves `adapter` now, or None (the LoRA path): only while
        `adapter` is its name's current version (a promote moves the name, and pinned requests
        with it, back to the LoRA path), and only a healthy engine whose served names match
        the registered files (docs/serving.md, "Merged fast path")."""
        if not adapter.current:
            return None
        return self.engines.merged_for(adapter.engine_name)

    async def _hold(self, engine_name: str) -> Hold | None:
        """With shared leases: a hold on `engine_name` (waiting while another worker drains
        it); if another worker unloaded it since this one last looked, forget that it was
        loaded, so `_ensure` loads it again."""
        if self.shared is None:
            return None
        hold = await self.shared.hold(engine_name)
        if hold.generation != self._generations.get(engine_name, 0):
            self.engines.forget(engine_name)
            self._generations[engine_name] = hold.generation
        return hold

    async def _learn(self) -> None:
        """With shared leases, other workers load and unload too: ask the engines what they
        hold before deciding what to unload."""
        if self.shared is not None:
            await self.engines.refresh()

    def in_flight(self, engine_name: str | None = None) -> int:
        """Requests in flight (on `engine_name`: on either path; an unload drains only the
        LoRA path's, the merged engine keeps serving)."""
        if engine_name is None:
            return sum(self._in_flight.values())
        return self._in_flight[engine_name] + self._in_flight[_counted_as(engine_name, True)]

    def _took(self, engine_name: str) -> None:
        self._in_flight[engine_name] += 1
        if self.on_lease is not None:
            self.on_lease(engine_name, 1)

    def _release(self, engine_name: str) -> None:
        self._in_flight[engine_name] -= 1
        if self._in_flight[engine_name] <= 0:
            del self._in_flight[engine_name]
        if self.on_lease is not None:
            self.on_lease(engine_name, -1)
        self._released.set()

    def _gate(self, engine_name: str) -> asyncio.Lock:
        return self._gates.setdefault(engine_name, asyncio.Lock())

    async def _drain(self, engine_name: str, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._in_flight[engine_name] > 0:
            left = deadline - loop.time()
            if left <= 0:
                raise AdapterBusy(
                    f"adapter '{engine_name}' still has {self._in_flight[engine_name]} "
                    f"request(s) in flight after {timeout_s:.0f} s; retry the unload later"
                )
            self._released.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), min(left, 1.0))

    # ---- what is loaded ----------------------------------------------------------------------

    def loaded(self) -> dict[str, list[str]]:
        """Engine name -> URLs of the replicas that hold it (as last seen)."""
        out: dict[str, list[str]] = {}
        for replica in self.engines.replicas:
            for name in replica.adapters:
                out.setdefault(name, []).append(replica.url)
        return out

    def versions_of(self, ref: str) -> list[AdapterVersion]:
        """`name` -> every registered version; `name@v` -> that one.

        Raises:
            AdapterNotFound: unknown name or version.
        """
        if "@" in ref:
            return [self.registry.resolve(ref).adapter]
        versions = [v for v in self.registry.list() if v.name == ref]
        if not versions:
            self.registry.resolve(ref)  # raises with the list of names
        return versions

    # ---- operations --------------------------------------------------------------------------

    async def load(self, ref: str) -> tuple[AdapterVersion, list[str]]:
        """Load `name` (its current version) or `name@version` now rather than on first use."""
        target = self.resolve(ref)
        if target.adapter is None:
            raise AdapterNotFound(f"'{ref}' is the base model, which is always loaded")
        async with self._gate(target.engine_name):
            replica = await self._ensure(target.adapter)
        return target.adapter, [replica.url]

    async def _ensure(self, adapter: AdapterVersion) -> Replica:
        """`engines.ensure_adapter`, after checking the stored files again when no engine holds
        the version yet (files can change on disk after registration; a NaN weight must never
        reach the engine, see docs/serving.md).

        Raises:
            AdapterLoadError: the stored files fail the checks (the message names server paths:
                the gateway logs it and tells clients only that the model could not be loaded).
        """
        if adapter.engine_name not in self.loaded():
            try:
                await asyncio.to_thread(self.registry.check, adapter.path)
            except AdapterRejected as exc:
                raise AdapterLoadError(
                    f"adapter '{adapter.engine_name}' was not loaded: its stored files fail the "
                    f"registry's checks ({exc})",
                    url=", ".join(replica.url for replica in self.engines.replicas),
                    status_code=422,
                ) from None
        return await self.engines.ensure_adapter(adapter.engine_name, adapter.path)

    async def load_test(self, adapter: AdapterVersion, *, timeout_s: float = 120.0) -> None:
        """Load `adapter` on an engine and generate one token with it, with its logprob: vLLM
        reads the weights lazily at the first request, so this is what proves the engine can
        serve it (a damaged file, an option the engine refuses, NaN logits all fail here). One
        prefill-only token cannot leave NaN behind in the engine (docs/serving.md).

        Raises:
            AdapterRejected: the engine refused the adapter or computed non-finite values.
            EngineUnavailable: no engine answered.
        """
        async with self._gate(adapter.engine_name):
            try:
                replica = await self._ensure(adapter)
                await replica.client.generate(
                    "/v1/completions",
                    {
                        "model": adapter.engine_name,
                        "prompt": "Hello",
                        "max_tokens": 1,
                        "temperature": 0,
                        "logprobs": 1,
                    },
                    timeout_s=timeout_s,
                )
            except EngineRequestError as exc:
                message = getattr(exc, "engine_message", "") or str(exc)
                if "JSON compliant" in message:
                    message = "the engine computed NaN or infinite logits with it"
                raise AdapterRejected(
                    f"adapter '{adapter.engine_name}' failed its load test on the engine: {message}"
                ) from None

    async def unload(self, ref: str, *, timeout_s: float | None = None) -> list[str]:
        """Unload every loaded version of `name` (or just `name@version`) once their requests in
        flight are done; return the engine names unloaded. The adapter stays registered: a
        later request loads it again.

        Raises:
            AdapterNotFound: unknown name or version.
            AdapterNotLoaded: registered, but no engine holds it.
            AdapterBusy: requests still in flight after the drain timeout.
        """
        await self._learn()
        loaded = self.loaded()
        names = [v.engine_name for v in self.versions_of(ref) if v.engine_name in loaded]
        if not names:
            raise AdapterNotLoaded(
                f"'{ref}' is registered but not loaded on any engine; nothing to unload",
                url=", ".join(r.url for r in self.engines.replicas),
                status_code=404,
            )
        for engine_name in names:
            await self._unload_one(engine_name, timeout_s or self.drain_timeout_s)
        return names

    async def _unload_one(self, engine_name: str, timeout_s: float) -> None:
        async with self._gate(engine_name):
            if self.shared is None:
                await self._drain(engine_name, timeout_s)
                with contextlib.suppress(AdapterNotLoaded):
                    await self.engines.unload_adapter(engine_name)
                return
            try:
                async with self.shared.drained(engine_name, timeout_s) as drain:
                    await self.engines.refresh()  # it may have been loaded by another worker
                    with contextlib.suppress(AdapterNotLoaded):
                        await self.engines.unload_adapter(engine_name)
            except DrainTimeout:
                raise AdapterBusy(
                    f"adapter '{engine_name}' still has requests in flight on the gateway's "
                    f"workers after {timeout_s:.0f} s; retry the unload later"
                ) from None
            assert drain.generation is not None
            self._generations[engine_name] = drain.generation  # our view is current

    async def promote(self, name: str, version: str) -> Promotion:
        """Make `name@version` what `name` resolves to, loaded before the switch.

        Raises:
            AdapterNotFound: unknown name or version.
            AdapterRejected / EngineUnavailable: the new version failed its load test on the
                engine (`load_test`); nothing was switched.
        """
        new = self.registry.resolve(f"{name}@{version}").adapter
        try:
            previous = self.registry.resolve(name).adapter
        except AdapterNotFound:
            previous = None
        await self.load_test(new)  # also for versions registered offline, never tested
        await asyncio.to_thread(self.registry.promote, name, version)
        await self._learn()
        retiring = (
            self.unload_previous
            and previous is not None
            and previous.engine_name != new.engine_name
            and previous.engine_name in self.loaded()
        )
        if retiring:
            assert previous is not None
            self._spawn(self._retire(previous.engine_name))
        log.info("promoted %s: %s -> %s", name, previous and previous.version, version)
        return Promotion(name, previous and previous.version, version, retiring)

    async def register(
        self, source: Path, name: str, version: str | None = None, *, promote: bool = True
    ) -> AdapterVersion:
        """Check and copy an adapter folder into the registry, load-test it on the engine, and
        only then make it current (with `promote`, or when it is the first version). If an
        earlier version of `name` is loaded, the new one is swapped in as by `promote`. A
        version that fails its load test is removed again: the previous one stays current.

        Raises:
            AdapterRejected: the folder cannot be served on this base, or the engine could not
                load it (the reason is given).
            EngineUnavailable: no engine answered the load test (nothing was registered).
        """
        await self._learn()
        loaded = self.loaded()
        hot = any(v.name == name and v.engine_name in loaded for v in self.registry.list())
        registered = await asyncio.to_thread(
            self.registry.register, source, name, version, promote=False, pending=True
        )
        try:
            await self.load_test(registered)
        except (AdapterRejected, EngineUnavailable) as exc:
            await self._discard(registered)
            try:
                kept = f"'{name}' still serves {self.registry.resolve(name).adapter.version}"
            except AdapterNotFound:
                kept = f"'{name}' is not registered"
            raise type(exc)(f"{exc}; it was not registered ({kept})", **_extra(exc)) from None
        first = not any(
            v.name == name and v.current for v in await asyncio.to_thread(self.registry.list)
        )
        if promote or first:
            if hot:
                await self.promote(name, registered.version)
            else:
                await asyncio.to_thread(self.registry.promote, name, registered.version)
        else:  # tested, not served yet: free its engine slot until it is promoted
            async with self._gate(registered.engine_name):
                with contextlib.suppress(AdapterNotLoaded, EngineUnavailable):
                    await self.engines.unload_adapter(registered.engine_name)
        return self.registry.resolve(f"{name}@{registered.version}").adapter

    async def _discard(self, adapter: AdapterVersion) -> None:
        """Unload (if loaded) and remove a version that failed its load test."""
        with contextlib.suppress(AdapterNotLoaded, EngineUnavailable, EngineRequestError):
            await self.engines.unload_adapter(adapter.engine_name)
        await asyncio.to_thread(self.registry.remove, adapter.name, adapter.version)

    async def _retire(self, engine_name: str) -> None:
        try:
            await self._unload_one(engine_name, self.drain_timeout_s)
            log.info("unloaded %s after its requests in flight finished", engine_name)
        except (AdapterBusy, EngineUnavailable) as exc:
            log.warning("previous version %s stays loaded: %s", engine_name, exc)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for background unloads (after promotes) to finish; for shutdown and tests."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def _counted_as(engine_name: str, merged: bool) -> str:
    """The key a request in flight is counted under: merged-path requests apart, so that
    draining the LoRA copy of a version never waits for its merged engine's traffic."""
    return f"{engine_name} (merged)" if merged else engine_name


def _extra(exc: Exception) -> dict:
    return {"url": exc.url} if isinstance(exc, EngineUnavailable) else {}
