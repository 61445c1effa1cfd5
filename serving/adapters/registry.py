"""Versioned adapters on disk.

Layout under the registry root::

    index.json                 {"adapters": {name: {"current": "v2", "versions": {"v1": {...}}}}}
    store/<name>/<version>/    a checked copy of the adapter folder (the only paths ever served)
    .lock                      serialises writers across processes (CLI, gateway workers)

Every write is atomic: files are copied into a temporary folder inside the root and renamed;
index.json is replaced with os.replace after fsync. A kill -9 at any point leaves the previous
index readable, and a half-copied version is never listed. Readers take no lock: they read
whole `index.json` files only (os.replace swaps the file, never rewrites it in place). Several
processes, on one host or on hosts sharing the folder over NFS v4 (Linux emulates flock there
with POSIX locks), may write at once: each write is a read-modify-write of the index under the
lock, so none is lost (tests/serving/test_registry_processes.py). Writers of one process (the
gateway writes from worker threads) also take a process-wide thread lock first: where the file
lock is a POSIX lock (NFS), it belongs to the process, so two threads would both get it, and
either one's close would release it for both.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from serving.adapters.base import ServedBase
from serving.adapters.checks import COPIED_FILES, MANIFEST_FILE, MANIFEST_FORMAT, check_adapter
from serving.adapters.errors import AdapterNotFound, AdapterRejected, RegistryError
from serving.adapters.weights import MAX_ABS_WEIGHT, default_max_bytes

_WRITERS: dict[str, threading.Lock] = {}
"""Registry root -> the thread lock this process's writers take before the file lock."""
_WRITERS_GUARD = threading.Lock()

# Checked with fullmatch: `$` would also match before a trailing newline.
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}[a-z0-9]|[a-z0-9]")
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


@dataclass(frozen=True)
class AdapterVersion:
    name: str
    version: str
    path: Path
    rank: int
    registered_at: str
    foreign: bool
    current: bool

    @property
    def engine_name(self) -> str:
        """The name the engine serves this version under (one per version, so the engine's
        prefix cache, keyed by adapter name, can never serve another version's cache)."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class ResolvedAdapter:
    requested: str
    adapter: AdapterVersion


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AdapterRegistry:
    def __init__(
        self,
        root: Path,
        base: ServedBase,
        max_rank: int,
        *,
        max_bytes: int | None = None,
        max_abs_weight: float = MAX_ABS_WEIGHT,
    ):
        """
        Args:
            root: the registry folder (created if missing).
            base: the served base model adapters are checked against.
            max_rank: the engine's max LoRA rank.
            max_bytes: largest adapter folder accepted; default: a rank-`max_rank` fp32 LoRA
                on every linear layer of the base, with headroom (`default_max_bytes`).
            max_abs_weight: largest |weight| accepted in a LoRA matrix.
        """
        self.root = root.expanduser()
        self.base = base
        self.max_rank = max_rank
        self.max_bytes = max_bytes or default_max_bytes(base.shapes, max_rank)
        self.max_abs_weight = max_abs_weight
        (self.root / "store").mkdir(parents=True, exist_ok=True)
        self._cache: tuple[tuple | None, dict, dict[str, ResolvedAdapter]] | None = None
        """(index.json's identity, its parsed index, models resolved in it): `_read_only_index`."""

    # ---- reading ---------------------------------------------------------------------------
    def _read_only_index(self) -> dict:
        return self._snapshot()[1]

    def _snapshot(self) -> tuple[tuple | None, dict, dict[str, ResolvedAdapter]]:
        """The index for readers, who must not change it: parsed again only when index.json
        is another file than last time (writers replace it, so a write changes its inode;
        an edit by hand its mtime or size). A request resolves its model through this, so
        the gateway does not read and parse the file on every lease (bench/gateway_cost.py);
        other processes' writes are still seen at once."""
        try:
            stat = os.stat(self.root / "index.json")
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = None
        cache = self._cache
        if cache is None or cache[0] != key:
            cache = self._cache = (key, self._index(), {})
        return cache

    def _index(self) -> dict:
        """The index as stored now, a fresh copy (writers change and write it back)."""
        path = self.root / "index.json"
        if not path.exists():
            return {"adapters": {}}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:  # cannot happen through os.replace; say so if edited by hand
            raise RegistryError(
                f"{path} is not valid JSON ({exc}); restore it from a backup"
            ) from exc

    def _version(self, name: str, version: str, entry: dict, current: str | None) -> AdapterVersion:
        info = entry["versions"][version]
        return AdapterVersion(
            name=name,
            version=version,
            path=self.root / "store" / name / version,
            rank=int(info["rank"]),
            registered_at=info["registered_at"],
            foreign=bool(info.get("foreign")),
            current=version == current,
        )

    def list(self) -> list[AdapterVersion]:
        out = []
        for name, entry in sorted(self._read_only_index()["adapters"].items()):
            for version in entry["versions"]:
                out.append(self._version(name, version, entry, entry.get("current")))
        return out

    def names(self) -> list[str]:
        return sorted(self._read_only_index()["adapters"])

    def resolve(self, model: str) -> ResolvedAdapter:
        """`name` -> its current version; `name@version` -> that version.

        Raises:
            AdapterNotFound: listing the adapters (or versions) that exist.
        """
        _, index, resolved = self._snapshot()
        if model not in resolved:
            resolved[model] = self._resolve(model, index["adapters"])
        return resolved[model]

    def _resolve(self, model: str, adapters: dict) -> ResolvedAdapter:
        name, _, version = model.partition("@")
        if name not in adapters:
            raise AdapterNotFound(
                f"unknown adapter '{name}' (registered: {', '.join(sorted(adapters)) or 'none'})"
            )
        entry = adapters[name]
        if not version and not entry.get("current"):
            raise AdapterNotFound(
                f"adapter '{name}' has no current version yet (its first version is being "
                f"load-tested on the engine; versions: {', '.join(entry['versions'])})"
            )
        version = version or entry.get("current")
        if not version or version not in entry["versions"]:
            raise AdapterNotFound(
                f"adapter '{name}' has no version '{version}' (versions: "
                f"{', '.join(entry['versions'])})"
            )
        return ResolvedAdapter(model, self._version(name, version, entry, entry.get("current")))

    # ---- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        with _WRITERS_GUARD:
            writers = _WRITERS.setdefault(str(self.root.resolve()), threading.Lock())
        with writers, open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._remove_leftovers()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _remove_leftovers(self) -> None:
        """Staging folders and index temp files of a writer killed mid-way. Writers create them
        only while holding the lock, so under the lock every one of them is an orphan."""
        for leftover in self.root.glob(".staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.root.glob(".index-*.json"):
            leftover.unlink(missing_ok=True)

    def _write_index(self, index: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".index-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(index, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.root / "index.json")
            dir_fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def register(
        self,
        source: Path,
        name: str,
        version: str | None = None,
        *,
        promote: bool = True,
        pending: bool = False,
    ) -> AdapterVersion:
        """Check `source` against the served base, copy it in as `name@version`.

        A folder without a Hybrid manifest (trained by another tool) is checked by its tensor
        names and shapes, and a manifest is written for it. The first version of a name becomes
        current unless `pending` (the caller promotes it after testing it on the engine).
        Raises:
            AdapterRejected: bad name, the folder cannot be served on this base, or it exists.
        """
        if not NAME.fullmatch(name):
            raise AdapterRejected(
                f"invalid adapter name '{name}': use 1-64 characters of a-z, 0-9, '.', '_', '-'"
            )
        if version is not None and not VERSION.fullmatch(version):
            raise AdapterRejected(f"invalid version '{version}': use up to 32 of A-Z a-z 0-9 . _ -")
        source = Path(source).expanduser()
        facts = self.check(source)
        with self._locked():
            index = self._index()
            entry = index["adapters"].setdefault(name, {"current": None, "versions": {}})
            if version is None:
                numbers = [int(v[1:]) for v in entry["versions"] if re.fullmatch(r"v\d+", v)]
                version = f"v{max(numbers, default=0) + 1}"
            if version in entry["versions"]:
                raise AdapterRejected(f"adapter '{name}@{version}' is already registered")
            target = self.root / "store" / name / version
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".staging-"))
            try:
                for file in COPIED_FILES:
                    if (source / file).is_file():
                        shutil.copy2(source / file, staging / file)
                manifest = facts.manifest or self._foreign_manifest(name, facts)
                manifest = {**manifest, "registered_as": f"{name}@{version}"}
                (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
                self.check(staging)  # the copy is what is served
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():  # left by a run killed before its index update
                    shutil.rmtree(target)
                staging.rename(target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            entry["versions"][version] = {
                "rank": facts.rank,
                "registered_at": _now(),
                "foreign": facts.foreign,
                "source": str(source),
            }
            if promote or (entry["current"] is None and not pending):
                entry["current"] = version
            self._write_index(index)
            return self._version(name, version, entry, entry["current"])

    def check(self, folder: Path):
        """Every check of `check_adapter` with this registry's limits; the folder's facts.

        Raises:
            AdapterRejected: the folder cannot be served (the message says why and the fix).
        """
        return check_adapter(
            folder,
            self.base,
            self.max_rank,
            max_bytes=self.max_bytes,
            max_abs_weight=self.max_abs_weight,
        )

    def _foreign_manifest(self, name: str, facts) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "name": name,
            "created_at": _now(),
            "trained_by": "external (manifest written at registration)",
            "base_model": {
                "id": self.base.path.name,
                "path": str(self.base.path),
                "fingerprint": self.base.fingerprint,
                "fingerprint_algorithm": "hybrid-base/1",
            },
            "lora": {
                "rank": facts.rank,
                "alpha": facts.alpha,
                "target_modules": list(facts.target_modules),
                "modules_to_save": [],
            },
        }

    def promote(self, name: str, version: str) -> AdapterVersion:
        """Make `version` the one `name` resolves to."""
        with self._locked():
            index = self._index()
            self._resolve_in(index, name, version)
            index["adapters"][name]["current"] = version
            self._write_index(index)
        return self._version(name, version, index["adapters"][name], version)

    def remove(self, name: str, version: str) -> None:
        """Forget a version (its files are deleted). The current version cannot be removed while
        others exist: promote another first."""
        with self._locked():
            index = self._index()
            self._resolve_in(index, name, version)
            entry = index["adapters"][name]
            if entry["current"] == version and len(entry["versions"]) > 1:
                raise AdapterRejected(
                    f"'{name}@{version}' is the current version; promote another version first"
                )
            del entry["versions"][version]
            if not entry["versions"]:
                del index["adapters"][name]
            self._write_index(index)
            # Under the lock: another process may register this name@version again right after.
            shutil.rmtree(self.root / "store" / name / version, ignore_errors=True)

    def _resolve_in(self, index: dict, name: str, version: str) -> None:
        entry = index["adapters"].get(name)
        if entry is None:
            raise AdapterNotFound(
                f"unknown adapter '{name}' (registered: {', '.join(sorted(index['adapters'])) or 'none'})"
            )
        if version not in entry["versions"]:
            raise AdapterNotFound(
                f"adapter '{name}' has no version '{version}' (versions: {', '.join(entry['versions'])})"
            )
