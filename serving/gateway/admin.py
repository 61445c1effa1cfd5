"""The admin API's logic, free of FastAPI: list, register, load, unload and promote adapters.
Every call needs an admin principal; every outcome is counted in the metrics. The bodies are
validated by the routes (FastAPI, against the models below)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from serving.adapters.errors import AdapterNotFound
from serving.adapters.files import version_file, version_manifest
from serving.adapters.manager import AdapterManager
from serving.adapters.registry import AdapterVersion
from serving.engine.routing import ReplicaState
from serving.frozen import Frozen
from serving.gateway.auth import Principal
from serving.gateway.errors import GatewayError, to_answer
from serving.gateway.metrics import GatewayMetrics


class RegisterBody(Frozen):
    path: str = Field(min_length=1)
    """Adapter folder on the gateway's machine."""
    name: str = Field(min_length=1)
    version: str | None = None
    promote: bool = True


class VersionBody(Frozen):
    version: str | None = None


class PromoteBody(Frozen):
    version: str = Field(min_length=1)


class AdapterFile(Frozen):
    name: str
    size: int
    sha256: str


class AdapterFiles(Frozen):
    """A registered version's files, for a replica that fetches them (docs/serving.md)."""

    format: str
    id: str
    """The engine name, `name@version`."""
    name: str
    version: str
    files: list[AdapterFile]


def describe(
    version: AdapterVersion,
    loaded: dict[str, list[str]],
    in_flight: int,
    merged: Sequence[ReplicaState] = (),
    by_worker: dict[str, int] | None = None,
) -> dict:
    """A version as the admin API lists it. `served_via` is the path its requests take now:
    `merged` (a healthy merged engine serves it, and it is current) or `lora`. `by_worker`
    (several worker processes): the requests in flight each worker holds (workers that hold
    none left out)."""
    engines = [state for state in merged if version.engine_name in state.adapters]
    fast = version.current and any(state.healthy for state in engines)
    described = {
        "name": version.name,
        "version": version.version,
        "id": version.engine_name,
        "current": version.current,
        "rank": version.rank,
        "registered_at": version.registered_at,
        "foreign": version.foreign,
        "loaded_on": loaded.get(version.engine_name, []),
        "in_flight": in_flight,
        "served_via": "merged" if fast else "lora",
        "merged_engines": [{"url": s.url, "healthy": s.healthy} for s in engines],
    }
    if by_worker is not None:
        described["in_flight_by_worker"] = by_worker
    return described


class AdminHandler:
    def __init__(self, manager: AdapterManager, metrics: GatewayMetrics):
        self.manager = manager
        self.metrics = metrics

    async def _counted(self, operation: str, coro):
        try:
            result = await coro
        except BaseException as exc:
            self.metrics.adapter_operations.labels(operation, str(to_answer(exc).status)).inc()
            raise
        self.metrics.adapter_operations.labels(operation, "ok").inc()
        return result

    def list(self, principal: Principal) -> dict:
        principal.require_admin()
        loaded = self.manager.loaded()
        merged = self.manager.engines.merged_states()
        versions = self.manager.registry.list()
        if self.metrics.multiprocess_dir is None:  # one process: its own count
            counts = [(self.manager.in_flight(v.engine_name), None) for v in versions]
        else:  # every live worker's, from the metrics they share
            held = self.metrics.leases_by_worker()
            counts = []
            for v in versions:
                by_worker = held.get(v.engine_name, {})
                counts.append((sum(by_worker.values()), by_worker))
        return {
            "base_model": self.manager.base_name,
            "adapters": [
                describe(v, loaded, in_flight, merged, by_worker)
                for v, (in_flight, by_worker) in zip(versions, counts, strict=True)
            ],
        }

    async def register(self, request: RegisterBody, principal: Principal) -> dict:
        principal.require_admin()
        version = await self._counted(
            "register",
            self.manager.register(
                Path(request.path), request.name, request.version, promote=request.promote
            ),
        )
        return describe(version, self.manager.loaded(), 0)

    async def load(self, name: str, request: VersionBody | None, principal: Principal) -> dict:
        principal.require_admin()
        ref = _ref(name, request)
        version, urls = await self._counted("load", self.manager.load(ref))
        return {"id": version.engine_name, "loaded_on": urls}

    async def unload(self, name: str, request: VersionBody | None, principal: Principal) -> dict:
        principal.require_admin()
        ref = _ref(name, request)
        unloaded = await self._counted("unload", self.manager.unload(ref))
        return {"unloaded": unloaded}

    async def promote(self, name: str, request: PromoteBody, principal: Principal) -> dict:
        principal.require_admin()
        promotion = await self._counted("promote", self.manager.promote(name, request.version))
        return {
            "name": promotion.name,
            "previous": promotion.previous,
            "current": promotion.current,
            "previous_unloading": promotion.retiring,
        }

    async def files(self, name: str, version: str, principal: Principal) -> dict:
        """The manifest of `name@version`'s files (sha256 of each), checked again first."""
        principal.require_admin()
        adapter = self._version(name, version)
        return await asyncio.to_thread(version_manifest, self.manager.registry, adapter)

    def file(self, name: str, version: str, file: str, principal: Principal) -> Path:
        """The path of one file the manifest of `name@version` lists."""
        principal.require_admin()
        return version_file(self._version(name, version), file)

    def _version(self, name: str, version: str):
        """A registered version, by its exact name and version (never `current`).

        Raises:
            AdapterNotFound: no such name or version (the message lists what exists).
        """
        if "@" in name or "@" in version:
            raise AdapterNotFound(f"no adapter version '{name}@{version}'")
        return self.manager.registry.resolve(f"{name}@{version}").adapter


OPERATIONS = ("load", "unload", "promote")


def unknown_operation(operation: str) -> GatewayError:
    """The 404 for POST /admin/adapters/{name}/{operation} with another operation."""
    return GatewayError(
        f"unknown adapter operation '{operation}'; use one of {', '.join(OPERATIONS)}",
        status=404,
        code="not_found",
    )


def _ref(name: str, request: VersionBody | None) -> str:
    """`name`, or `name@version` when the body names a version."""
    return f"{name}@{request.version}" if request is not None and request.version else name
