"""Process-group and OS helpers for the supervisor (Linux first: /proc, /dev/shm)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path


def pick_free_port(host: str) -> int:
    """A port the OS says is free now (another process could still take it before vLLM)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel whether any member is left
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def shared_memory_files(pids: Sequence[int]) -> set[str]:
    """Files under /dev/shm that the processes `pids` have mapped or open (Linux)."""
    found: set[str] = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                found.add(parts[5])
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("/dev/shm/"):
                        found.add(target)
    return {path for path in found if not path.endswith(" (deleted)")}


def unlink_shared_memory(files: set[str], pids: Sequence[int]) -> None:
    """Remove the shared memory of a dead server: the files it had mapped, and named semaphores
    that carry one of its pids (e.g. /dev/shm/sem.loky-<pid>-xxxx)."""
    shm = Path("/dev/shm")
    owned = set(files)
    if pids and shm.is_dir():
        marks = tuple(f"-{pid}-" for pid in pids)
        owned |= {str(entry) for entry in shm.iterdir() if any(m in entry.name for m in marks)}
    for name in owned:
        with contextlib.suppress(OSError):
            os.unlink(name)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
