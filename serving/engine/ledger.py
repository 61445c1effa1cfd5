"""What an engine set loaded into the server it supervises, loaded again after a restart.

`EngineProcess` restarts a dead vLLM server but knows nothing of adapters; the new server
starts without any. An `AdapterLedger` hangs itself on the process's `on_launch` hooks and,
after each (re)start and before the server counts as ready, loads its adapters again through an
`EngineClient`, so a request right after `wait_ready` finds them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from serving.engine.client import EngineClient, run_sync
from serving.engine.process import EngineProcess
from serving.errors import AdapterAlreadyLoaded, ServingError

log = logging.getLogger("serving.engine")

RELOAD_TIMEOUT_S = 120.0
"""One load reads the adapter folder; vLLM takes 10-40 ms, a loaded machine much longer."""


class AdapterLedger:
    """Adapters loaded into `process`'s server (name -> folder) that must survive a restart.

    Thread-safe: the engine set records loads from the event loop, the supervisor reloads them
    from its watchdog thread.
    """

    def __init__(self, process: EngineProcess):
        self.process = process
        self._lock = threading.Lock()
        self._adapters: dict[str, str] = {}
        self._lost: dict[str, str] = {}

    def attach(self) -> AdapterLedger:
        """Reload the ledger after every start and restart of the process from now on."""
        if self.restore not in self.process.on_launch:
            self.process.on_launch.append(self.restore)
        return self

    def detach(self) -> None:
        with contextlib.suppress(ValueError):
            self.process.on_launch.remove(self.restore)

    @property
    def adapters(self) -> dict[str, str]:
        with self._lock:
            return dict(self._adapters)

    @property
    def lost(self) -> dict[str, str]:
        """Adapters that could not be loaded again after a restart, name -> the engine's error."""
        with self._lock:
            return dict(self._lost)

    def remember(self, name: str, path: str | Path) -> None:
        with self._lock:
            self._adapters[name] = str(Path(path).expanduser().absolute())
            self._lost.pop(name, None)

    def forget(self, name: str) -> None:
        with self._lock:
            self._adapters.pop(name, None)

    def restore(self) -> None:
        """Load every adapter of the ledger into the (new) server. One that fails is dropped
        from the ledger and kept in `lost`; the others are loaded all the same.

        Raises:
            ServingError: the last failure, after all were tried (the supervisor keeps it as
                its `last_error`).
        """
        failures = run_sync(self._restore())
        if failures:
            raise failures[-1]

    async def _restore(self) -> list[ServingError]:
        failures = []
        key = self.process.api_key
        async with EngineClient(self.process.url, api_key=key, timeout_s=RELOAD_TIMEOUT_S) as c:
            for name, folder in self.adapters.items():
                try:
                    await c.load_lora_adapter(name, folder)
                except AdapterAlreadyLoaded:
                    pass  # loaded meanwhile by a request of the engine set
                except ServingError as exc:
                    log.error("adapter %s not loaded again after restart: %s", name, exc)
                    failures.append(exc)
                    with self._lock:
                        self._adapters.pop(name, None)
                        self._lost[name] = str(exc)
        return failures
