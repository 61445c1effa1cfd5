"""Everything a running gateway holds, built once and handed to the app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from serving.adapters.manager import AdapterManager
from serving.gateway.admin import AdminHandler
from serving.gateway.auth import KeyRing
from serving.gateway.composing import ChatComposer
from serving.gateway.config import GatewayConfig
from serving.gateway.embeddings import EmbeddingProvider
from serving.gateway.handlers import InferenceHandler
from serving.gateway.metrics import GatewayMetrics

log = logging.getLogger("serving.gateway")


@dataclass
class GatewayState:
    config: GatewayConfig
    manager: AdapterManager
    keys: KeyRing
    metrics: GatewayMetrics
    inference: InferenceHandler
    admin: AdminHandler
    preload: tuple[str, ...] = ()
    worker: int | None = None
    """Which of the gateway's worker processes this is (`hybrid serve --workers N`); None: the
    only one."""
    _watch: asyncio.Task | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        config: GatewayConfig,
        manager: AdapterManager,
        *,
        composers: Sequence[ChatComposer] = (),
        preload: Sequence[str] = (),
        metrics: GatewayMetrics | None = None,
        embedders: Sequence[EmbeddingProvider] = (),
        worker: int | None = None,
    ) -> GatewayState:
        metrics = metrics or GatewayMetrics()
        manager.on_lease = metrics.lease_changed  # counted across worker processes
        return cls(
            config=config,
            manager=manager,
            keys=KeyRing(config.auth),
            metrics=metrics,
            inference=InferenceHandler(
                manager,
                manager.engines,
                metrics,
                timeout_s=config.request_timeout_s,
                composers=composers,
                max_pending=config.max_pending_requests,
                embedders=embedders,
            ),
            admin=AdminHandler(manager, metrics),
            preload=tuple(preload),
            worker=worker,
        )

    async def readiness(self) -> dict:
        states = await self.manager.engines.refresh()
        answer = {
            "ready": any(state.healthy for state in states),
            "engines": [
                {"url": s.url, "healthy": s.healthy, "adapters": sorted(s.adapters)} for s in states
            ],
        }
        merged = self.manager.engines.merged
        if merged:
            answer["merged_engines"] = [
                {"url": m.url, "healthy": m.healthy, "serves": m.serves, "problem": m.problem}
                for m in merged
            ]
        return answer

    async def start(self) -> None:
        """Learn what the engines hold, load the preloaded adapters, watch engine health."""
        await self.manager.engines.refresh()
        for ref in self.preload:
            await self.manager.load(ref)
        self._watch = asyncio.get_running_loop().create_task(self._watch_engines())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.manager.settle()
        # The engine clients' connections end with the app's event loop (a started-again app
        # opens new ones); their adapters stay loaded.
        engines = self.manager.engines
        await asyncio.gather(*(r.client.aclose() for r in [*engines.replicas, *engines.merged]))

    async def _watch_engines(self) -> None:
        """Re-learn engine health and adapters, so a restarted replica is used again."""
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            try:
                await self.manager.engines.refresh()
            except Exception:  # the watcher must outlive surprises; they are logged
                log.exception("engine health check failed")
