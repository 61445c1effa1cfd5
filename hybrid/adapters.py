"""Adapter files and the registry folder without a server: what `hybrid adapter merge | scale`
and `hybrid adapter list | register | promote --offline` run. With a server running, the
gateway's admin API (`/admin/adapters`) does the registry work instead, so the engines switch
at once."""

from __future__ import annotations

from pathlib import Path

from hybrid.config import HybridConfig


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


def merge(adapter: Path, out: Path, *, base_model: str | None = None, dtype: str = "auto") -> Path:
    """Merge an adapter into its base model (default: the manifest's base) as one model folder."""
    from finetune.merge import merge_adapter

    return merge_adapter(adapter, out, base_model=base_model, dtype=dtype)


def scale(adapter: Path, out: Path, factor: float) -> Path:
    """Copy an adapter with its strength scaled (lora_alpha x factor)."""
    from finetune.scaling import scale_adapter

    return scale_adapter(adapter, out, factor)
