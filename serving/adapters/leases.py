"""Requests in flight per adapter version, counted across gateway processes.

With one gateway process, `AdapterManager` counts leases in memory. With several (`hybrid serve
--workers N`, or gateways on several hosts sharing one engine and `gateway.lease_dir`), a promote
or an unload in one process must wait for the requests that *other* processes hold on that
version. `SharedLeases` does it with file locks on two files per engine name in a folder the
processes share (a local folder for one host's workers; NFS v4 across hosts):

- a lease takes `<name>.gate` shared for a moment, then `<name>.held` shared while its process
  has any request of that name in flight;
- a drain takes `<name>.gate` exclusive (new leases of that name wait, in every process), then
  `<name>.held` exclusive (no process holds a lease), unloads, writes a new *generation* into
  `<name>.held` and releases both.

A process that finds a generation it has not seen learns that another process unloaded the
version behind its back, so it forgets its cached "loaded" and loads it again.

**Which locks.** POSIX record locks (`fcntl.lockf`: F_SETLK on the whole file), the locks NFS v4
implements natively; on NFS, Linux turns `flock` into them anyway. Their semantics decide the
design: a POSIX lock belongs to the *process* (two descriptors of one process never conflict,
a shared and an exclusive request of one process merge), and closing *any* descriptor of the
file drops all of that process's locks on it. So each process keeps one descriptor per lock
file open for its lifetime, holds at most one lock per file, and counts its own leases in
memory: the shared lock on `<name>.held` stands for "this process has at least one lease", a
drain in this process first waits for its own count to reach zero, and lock state only changes
in one section at a time per name (`_Name.busy`). The per-process state is process-wide (a
table keyed by folder and name), because the kernel's is: two `SharedLeases` over one folder in
one process share it. Locks on a local folder behave the same way, so the tests on local disk
exercise the semantics NFS gives. The kernel drops a killed process's locks with the process
(an NFS server, after its lease time when the whole client host is lost): a crash never leaves
a version undrainable for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.02
"""How often a waiting lease or drain tries its lock again (non-blocking tries keep the event
loop free; a blocking lock call would stall every other request of the process)."""

_BLOCKED = (errno.EACCES, errno.EAGAIN)
"""What F_SETLK answers when another process holds a conflicting lock."""


class DrainTimeout(Exception):
    """Leases of the name were still held when the drain's timeout ran out."""


@dataclass
class _Name:
    """This process's view of one engine name's lock files."""

    gate: int
    held: int
    holds: int = 0
    """Leases of the name this process holds; the shared lock on `held` is taken at 0 -> 1 and
    dropped at 1 -> 0."""
    busy: bool = False
    """A hold or a drain of this process is changing the name's locks (one at a time)."""


_NAMES: dict[tuple[str, str], _Name] = {}
"""Process-wide, as POSIX locks are: (folder, engine name) -> its descriptors and counts. The
descriptors stay open for the process's lifetime (closing one would drop its locks)."""


class Hold:
    """One request's shared hold on an engine name; `release()` (idempotent) frees it."""

    def __init__(self, entry: _Name, generation: int):
        self._entry: _Name | None = entry
        self.generation = generation
        """The name's unload generation when the hold was taken."""

    def release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.holds -= 1
            if entry.holds == 0:  # no await here: no hold or drain can slip in between
                _unlock(entry.held)


class Drain:
    """What `SharedLeases.drained` yields; `generation` is set when the block is left."""

    generation: int | None = None


class SharedLeases:
    def __init__(self, folder: Path):
        """
        Args:
            folder: a folder every gateway process that shares the engines sees (created if
                missing): a local one for the workers of one host, one on NFS v4 for gateways
                on several hosts; the lock files of each engine name live there.
        """
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)

    def _name(self, name: str) -> _Name:
        key = (str(self.folder), name)
        entry = _NAMES.get(key)
        if entry is None:
            entry = _NAMES[key] = _Name(self._open(name, "gate"), self._open(name, "held"))
        return entry

    def _open(self, name: str, kind: str) -> int:
        # Read-write: a POSIX exclusive lock needs a descriptor open for writing.
        return os.open(self.folder / f"{name}.{kind}", os.O_RDWR | os.O_CREAT, 0o600)

    async def hold(self, name: str) -> Hold:
        """A shared hold on `name`, waiting while any process drains it."""
        entry = self._name(name)
        await _claim(entry)
        gate = False
        try:
            await _lock(entry.gate, fcntl.LOCK_SH)  # waits while another process drains
            gate = True
            if entry.holds == 0:
                await _lock(entry.held, fcntl.LOCK_SH)  # free at once: no drain passed the gate
            entry.holds += 1  # no await since the lock was taken: a cancel cannot land between
            return Hold(entry, _generation(entry.held))
        finally:
            if gate:
                _unlock(entry.gate)
            entry.busy = False

    @contextlib.asynccontextmanager
    async def drained(self, name: str, timeout_s: float) -> AsyncIterator[Drain]:
        """Hold `name` exclusively: no lease of it exists in any process, none starts until
        the block ends; leaving the block bumps the name's generation (it was unloaded).

        Raises:
            DrainTimeout: leases still held after `timeout_s` (nothing was changed).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        entry = self._name(name)
        await _claim(entry, deadline)
        gate = held = False
        try:
            while entry.holds > 0:  # this process's own leases first (they hold `held` shared)
                if loop.time() >= deadline:
                    raise DrainTimeout
                await asyncio.sleep(POLL_S)
            await _lock(entry.gate, fcntl.LOCK_EX, deadline)
            gate = True
            await _lock(entry.held, fcntl.LOCK_EX, deadline)
            held = True
            drain = Drain()
            yield drain
            drain.generation = _generation(entry.held) + 1
            os.ftruncate(entry.held, 0)
            os.pwrite(entry.held, str(drain.generation).encode(), 0)
            os.fsync(entry.held)  # another host reads it through the server
        finally:
            if held:
                _unlock(entry.held)
            if gate:
                _unlock(entry.gate)
            entry.busy = False


async def _claim(entry: _Name, deadline: float | None = None) -> None:
    """Wait until no other hold or drain of this process is changing `entry`'s locks, then
    mark it busy."""
    loop = asyncio.get_running_loop()
    while entry.busy:
        if deadline is not None and loop.time() >= deadline:
            raise DrainTimeout
        await asyncio.sleep(POLL_S)
    entry.busy = True


async def _lock(fd: int, mode: int, deadline: float | None = None) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            fcntl.lockf(fd, mode | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in _BLOCKED:
                raise
            if deadline is not None and loop.time() >= deadline:
                raise DrainTimeout from None
            await asyncio.sleep(POLL_S)


def _unlock(fd: int) -> None:
    fcntl.lockf(fd, fcntl.LOCK_UN)


def _generation(fd: int) -> int:
    data = os.pread(fd, 32, 0)
    return int(data) if data.strip() else 0
