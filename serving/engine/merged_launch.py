"""Merged engines that the runtime starts and supervises itself (instead of being given their
url): each a supervised vLLM (`EngineProcess`) serving one adapter version merged into the base
model, started in a thread of its own beside the main engine. One that does not start is logged
in one line and left out, so its version takes the LoRA path; the gateway starts anyway.

The merge itself is not done here (serving/ never imports finetune/): the caller hands a
ready `EngineConfig` whose model is the merged folder (`hybrid serve`: hybrid/merged.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from serving.engine.config import EngineConfig, MergedEngineConfig
from serving.engine.process import EngineProcess

log = logging.getLogger("serving")


@dataclass(frozen=True)
class MergedLaunch:
    """A merged engine to start and supervise, made ready by the caller: `engine.model` is the
    version merged into the base model, served under `serving.engine.merged.served_names` of
    the version and its adapter digest."""

    entry: MergedEngineConfig
    """The version it serves and its health-check timeout (no url: it gets one at start)."""
    engine: EngineConfig
    """How to start it."""


class MergedEngines:
    """The merged engines of `launches`: started together, each in a thread; stopped together."""

    def __init__(self, launches: Sequence[MergedLaunch]):
        self.launches = tuple(launches)
        self.processes: dict[str, EngineProcess] = {}
        """engine name -> the supervisor of each merged engine started (or tried)."""
        self._started: dict[str, MergedEngineConfig] = {}
        self._stopping = threading.Event()

    def begin(self) -> list[threading.Thread]:
        """Start every merged engine, each in a thread; join them to wait until each is ready
        or has failed (a failure is logged, never raised)."""
        return [self._begin(launch) for launch in self.launches]

    def _begin(self, launch: MergedLaunch) -> threading.Thread:
        name = launch.entry.engine_name
        process = self.processes[name] = EngineProcess(launch.engine)

        def start() -> None:
            if self._stopping.is_set():  # stop() came first: no start is begun after it
                return
            try:
                process.start()
            except Exception as exc:  # any failure: the version keeps the LoRA path
                if process.state == "stopped":  # stopped while starting: no failure
                    return
                problem = getattr(exc, "problem", "") or f"{type(exc).__name__}: {exc}"
                log.error(
                    "merged engine for %s did not start, %s keeps the LoRA path: %s; log: %s",
                    name,
                    name,
                    problem,
                    process.log_path,
                )
                return
            entry = launch.entry
            self._started[name] = MergedEngineConfig(
                adapter=entry.adapter,
                version=entry.version,
                url=process.url,
                api_key=process.api_key,
                timeout_s=entry.timeout_s,
            )
            log.info(
                "merged engine for %s ready at %s after %.1f s (log: %s)",
                name,
                process.url,
                process.last_ready_s or 0.0,
                process.log_path,
            )

        thread = threading.Thread(target=start, name=f"merged-engine:{name}", daemon=True)
        thread.start()
        return thread

    def started(self) -> list[MergedEngineConfig]:
        """The merged engines that got ready, each with its url and key, in launch order."""
        names = [launch.entry.engine_name for launch in self.launches]
        return [self._started[name] for name in names if name in self._started]

    def stop(self) -> None:
        """Stop every merged engine and all of its processes (also one still starting)."""
        self._stopping.set()
        for process in self.processes.values():
            process.stop()
