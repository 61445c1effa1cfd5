"""Adapter files and the registry folder without a server: what `hybrid adapter merge | scale`
and `hybrid adapter list | register | promote --offline` run. With a server running, the
gateway's admin API (`/admin/adapters`) does the registry work instead, so the engines switch
at once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hybrid.config import HybridConfig
from hybrid.errors import UsageError


def offline_registry(config: HybridConfig):
    """The registry `hybrid serve` would use, read and written without a server."""
    from hybrid.runtime import offline_registry as registry  # serving's runtime: loaded on use

    return registry(config)


def list_registered(config: HybridConfig) -> list[dict]:
    """Registered adapter versions, in the admin API's shape (nothing is loaded offline)."""
    from serving.gateway.admin import describe

    return [describe(v, {}, 0) for v in offline_registry(config).list()]


def register(
    config: HybridConfig, folder: Path, name: str, version: str | None, *, promote: bool = True
):
    """Check an adapter folder against the base model and add it as `name@version`."""
    return offline_registry(config).register(folder, name, version, promote=promote)


def promote(config: HybridConfig, name: str, version: str) -> None:
    """Make `name@version` the version `name` serves."""
    offline_registry(config).promote(name, version)


@dataclass(frozen=True)
class Merged:
    """A merged model folder and the adapter it was merged from."""

    path: Path
    digest: str
    """sha256 of the adapter files that decide its outputs (serving.adapters.files)."""
    engine_name: str | None
    """`name@version` when a registered version was merged, else None."""

    def served_names(self) -> list[str]:
        """`--served-model-name` for a merged engine of this folder (only for a registered
        version: the gateway routes that version to it)."""
        from serving.engine.merged import served_names

        return served_names(self.engine_name, self.digest) if self.engine_name else []


def merge(
    adapter: str | Path,
    out: Path,
    *,
    config: HybridConfig | None = None,
    base_model: str | None = None,
    dtype: str = "auto",
) -> Merged:
    """Merge an adapter into its base model (default: the manifest's base) as one model folder.

    Args:
        adapter: an adapter folder, or `name@version` of a version in `config`'s registry.
            A registered version's name, version and file digest are recorded in the merged
            folder, and it can serve as that version's merged engine (docs/serving.md).

    Raises:
        UsageError: `adapter` is neither a folder nor `name@version`.
        AdapterNotFound: no such registered version (the message lists what exists).
    """
    from finetune.merge import merge_adapter
    from serving.adapters.files import adapter_digest

    folder = Path(adapter).expanduser()
    if not folder.is_dir():
        ref = str(adapter)
        if "@" not in ref:
            raise UsageError(
                f"'{ref}' is not an adapter folder nor a registered name@version "
                "(e.g. ceo-voice@v3: `hybrid adapter list` shows them)"
            )
        folder = offline_registry(config or HybridConfig()).resolve(ref).adapter.path
    engine_name = _registered_as(folder)
    digest = adapter_digest(folder)
    record = {"registered_as": engine_name, "sha256": digest}
    path = merge_adapter(folder, out, base_model=base_model, dtype=dtype, record=record)
    return Merged(path, digest, engine_name)


def _registered_as(folder: Path) -> str | None:
    """`name@version` of a registry's stored copy (its manifest says), else None."""
    try:
        manifest = json.loads((folder / "hybrid_adapter.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = manifest.get("registered_as") if isinstance(manifest, dict) else None
    return value if isinstance(value, str) and "@" in value else None


def scale(adapter: Path, out: Path, factor: float) -> Path:
    """Copy an adapter with its strength scaled (lora_alpha x factor)."""
    from finetune.scaling import scale_adapter

    return scale_adapter(adapter, out, factor)
