"""Requests in flight per adapter version, counted across the gateway's worker processes.

With one gateway process, `AdapterManager` counts leases in memory. With several (`hybrid serve
--workers N`), a promote or an unload in one worker must wait for the requests that *other*
workers hold on that version. `SharedLeases` does it with `flock` on two files per engine name
in a folder the workers share (one host):

- a lease takes `<name>.gate` shared for a moment, then `<name>.held` shared until its request's
  last byte is sent;
- a drain takes `<name>.gate` exclusive (new leases of that name wait, in every worker), then
  `<name>.held` exclusive (every lease was released), unloads, writes a new *generation* into
  `<name>.held` and releases both.

A worker that finds a generation it has not seen learns that another worker unloaded the
version behind its back, so it forgets its cached "loaded" and loads it again. The kernel
releases a killed worker's locks with its file descriptors: a crash never leaves a version
undrainable. flock, not fcntl/lockf: POSIX locks belong to the process, so two leases of one
worker would merge and a worker could never wait for its own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

POLL_S = 0.02
"""How often a waiting lease or drain tries its lock again (non-blocking tries keep the event
loop free; a blocking flock would stall every other request of the worker)."""


class DrainTimeout(Exception):
    """Leases of the name were still held when the drain's timeout ran out."""


class Hold:
    """One request's shared hold on an engine name; `release()` (idempotent) frees it."""

    def __init__(self, fd: int, generation: int):
        self._fd: int | None = fd
        self.generation = generation
        """The name's unload generation when the hold was taken."""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases its flock
            self._fd = None


class Drain:
    """What `SharedLeases.drained` yields; `generation` is set when the block is left."""

    generation: int | None = None


class SharedLeases:
    def __init__(self, folder: Path):
        """
        Args:
            folder: a folder every worker of one gateway sees (created if missing); the lock
                files of each engine name live there.
        """
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _open(self, name: str, kind: str) -> int:
        return os.open(self.folder / f"{name}.{kind}", os.O_RDWR | os.O_CREAT, 0o600)

    @staticmethod
    async def _lock(fd: int, mode: int, deadline: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if deadline is not None and loop.time() >= deadline:
                    raise DrainTimeout from None
                await asyncio.sleep(POLL_S)

    async def hold(self, name: str) -> Hold:
        """A shared hold on `name`, waiting while any worker drains it."""
        gate = self._open(name, "gate")
        try:
            await self._lock(gate, fcntl.LOCK_SH)
            held = self._open(name, "held")
            try:
                await self._lock(held, fcntl.LOCK_SH)  # free at once: no drain passes the gate
                return Hold(held, _generation(held))
            except BaseException:
                os.close(held)
                raise
        finally:
            os.close(gate)

    @contextlib.asynccontextmanager
    async def drained(self, name: str, timeout_s: float) -> AsyncIterator[Drain]:
        """Hold `name` exclusively: no lease of it exists in any worker, none starts until
        the block ends; leaving the block bumps the name's generation (it was unloaded).

        Raises:
            DrainTimeout: leases still held after `timeout_s` (nothing was changed).
        """
        deadline = asyncio.get_running_loop().time() + timeout_s
        gate = self._open(name, "gate")
        held = self._open(name, "held")
        try:
            await self._lock(gate, fcntl.LOCK_EX, deadline)
            await self._lock(held, fcntl.LOCK_EX, deadline)
            drain = Drain()
            yield drain
            drain.generation = _generation(held) + 1
            os.ftruncate(held, 0)
            os.pwrite(held, str(drain.generation).encode(), 0)
        finally:
            os.close(held)
            os.close(gate)


def _generation(fd: int) -> int:
    data = os.pread(fd, 32, 0)
    return int(data) if data.strip() else 0
