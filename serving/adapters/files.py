"""A registered version's files as the gateway hands them to replicas that cannot read the
registry folder: a manifest (name, size, sha256 of each file) and the files themselves.

The manifest's shape is the contract with the replica's fetcher
(serving/engine/vllm_plugins/hybrid_adapter_fetch.py, standard library only, so it cannot import
this module: `FILES_FORMAT` is written in both, and tests/serving/test_adapter_fetch.py runs the
fetcher against this route).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from serving.adapters.checks import COPIED_FILES, REQUIRED_FILES
from serving.adapters.errors import AdapterNotFound
from serving.adapters.registry import AdapterRegistry, AdapterVersion

FILES_FORMAT = "hybrid-adapter-files/1"
_CHUNK = 1 << 20


def served_files(folder: Path) -> list[Path]:
    """The files of a stored version that replicas get: the registry's copied files, as plain
    files (never a link), in a fixed order."""
    return [
        folder / name
        for name in sorted(COPIED_FILES)
        if (folder / name).is_file() and not (folder / name).is_symlink()
    ]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_digest(folder: Path) -> str:
    """sha256 over the sha256 of each file that decides an adapter's outputs (its config, with
    the scaling, and its weights), in a fixed order: equal for the folder an adapter was
    registered from and its copy in the registry, which rewrites only the manifest. A merged
    model records it, so a merged engine can be checked against the registered version."""
    lines = "".join(f"{name} {sha256_of(folder / name)}\n" for name in REQUIRED_FILES)
    return hashlib.sha256(lines.encode()).hexdigest()


def version_manifest(registry: AdapterRegistry, adapter: AdapterVersion) -> dict:
    """The manifest of `adapter`'s stored files, after the registry's checks passed on them
    again (files can change on disk after registration; a replica must never get weights the
    gateway would not load itself).

    Raises:
        AdapterRejected: the stored files fail the registry's checks.
    """
    registry.check(adapter.path)
    return {
        "format": FILES_FORMAT,
        "id": adapter.engine_name,
        "name": adapter.name,
        "version": adapter.version,
        "files": [
            {"name": path.name, "size": path.stat().st_size, "sha256": sha256_of(path)}
            for path in served_files(adapter.path)
        ],
    }


def version_file(adapter: AdapterVersion, name: str) -> Path:
    """The path of one file of `adapter` that the manifest lists.

    Raises:
        AdapterNotFound: no such file in the version (the message lists the files).
    """
    files = served_files(adapter.path)
    for path in files:
        if path.name == name:
            return path
    listed = ", ".join(p.name for p in files)
    raise AdapterNotFound(f"adapter '{adapter.engine_name}' has no file '{name}' (files: {listed})")
