"""Merged engines that `hybrid serve` starts itself (a `merged_engines` entry without `url`):
the registered version merged into the base model once, cached in the registry folder under
its adapter digest, and the vLLM server that serves it, described with the engine's settings.

serving/ starts and supervises that server (`ServingRuntime(launch_merged=...)`) but cannot
merge (it never imports finetune/), so the merge happens here, in the composition layer, with
the function behind `hybrid adapter merge`. A merge that fails is logged in one line and its
version keeps the LoRA path; the gateway starts anyway.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from hybrid.adapters import Merged, merge
from hybrid.errors import ConfigError
from serving.adapters import AdapterRegistry
from serving.adapters.errors import AdapterNotFound
from serving.adapters.files import adapter_digest
from serving.engine import EngineConfig, MergedEngineConfig
from serving.engine.merged import DIGEST_CHARS, served_names
from serving.engine.merged_launch import MergedLaunch

log = logging.getLogger(__name__)

MERGED_DIR = "merged"
"""Subfolder of the registry folder that holds the merged models `hybrid serve` made."""


def merged_folder(root: Path, engine_name: str, digest: str, dtype: str) -> Path:
    """Where the merge of `engine_name` with adapter files of `digest` is cached: a new digest
    (other weights or scaling) is a new folder, never a stale merge."""
    return root / MERGED_DIR / f"{engine_name}.{digest[:DIGEST_CHARS]}.{dtype}"


def cached_merge(
    registry: AdapterRegistry, engine_name: str, base_model: Path, dtype: str, threads: int
) -> Merged:
    """The registered version `engine_name` merged into `base_model`, from the cache when a
    complete merge of the same adapter files is there, else merged now (on `threads` torch
    threads). The merge writes a `.partial` folder and renames it into place when complete
    (finetune/folders.py), so a killed merge is never taken for a cached one.

    Raises:
        AdapterNotFound: `engine_name` is not registered.
        Exception: whatever the merge raises (files, memory, the base model).
    """
    adapter = registry.resolve(engine_name).adapter
    digest = adapter_digest(adapter.path)
    out = merged_folder(registry.root, adapter.engine_name, digest, dtype)
    if recorded_digest(out) == digest:
        log.info("merged engine for %s: using the merge in %s", engine_name, out)
        return Merged(out, digest, adapter.engine_name)
    if out.exists():  # not a merge of these files (changed by hand): made again
        shutil.rmtree(out)
    import torch

    torch.set_num_threads(threads)
    log.info(
        "merging %s into %s for its merged engine (once: cached in %s)",
        engine_name,
        base_model,
        out,
    )
    return merge(adapter.path, out, base_model=str(base_model), dtype=dtype)


def recorded_digest(folder: Path) -> str | None:
    """The adapter digest a merged model folder records (`hybrid_merged.json`), or None."""
    try:
        record = json.loads((folder / "hybrid_merged.json").read_text(encoding="utf-8"))
        digest = record["adapter"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) and (folder / "config.json").is_file() else None


def merged_engine_config(
    engine: EngineConfig, entry: MergedEngineConfig, merged: Merged
) -> EngineConfig:
    """The vLLM server for `merged`: the engine's settings (context length, dtype, KV cache,
    tool-call parser, interpreter, environment, restart policy, ...), with the merged folder as
    its model, the served names that prove the version and digest, a port and a secret of its
    own, one LoRA slot (it serves no LoRA), and its log beside the engine's."""
    first, *aliases = served_names(entry.engine_name, merged.digest)
    settings = engine.model_dump()
    settings.update(
        model=str(merged.path),
        served_model_name=first,
        served_model_aliases=tuple(aliases),
        port=entry.port or 0,
        api_key=None,
        max_loras=1,
        max_cpu_loras=None,
        log_file=merged_log_file(engine.log_file, entry.engine_name),
    )
    return EngineConfig.model_validate(settings)


def merged_log_file(engine_log: Path | None, engine_name: str) -> Path | None:
    """`logs/vllm.log` -> `logs/vllm.voice@v3.log`; None (a temporary file, as the engine's)
    when the engine's log is one."""
    if engine_log is None:
        return None
    return engine_log.with_name(f"{engine_log.stem}.{engine_name}{engine_log.suffix or '.log'}")


def merged_launches(
    entries: tuple[MergedEngineConfig, ...],
    engine: EngineConfig | None,
    registry: AdapterRegistry,
    base_model: Path,
) -> list[MergedLaunch]:
    """The merged engines to start for `entries` without url: each version merged (or found in
    the cache) and described with `engine`'s settings. A merge that fails is logged in one line
    and left out: that version keeps the LoRA path.

    Raises:
        ConfigError: an entry's version is not registered, or there are no engine settings.
    """
    started = [entry for entry in entries if entry.started_here]
    if not started:
        return []
    if engine is None:
        raise ConfigError(
            "merged_engines without url are started with the settings of `engine`, which is not "
            "configured; add url (a merged engine you started) or an engine section"
        )
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    launches = []
    for entry in started:
        name = entry.engine_name
        try:
            merged = cached_merge(registry, name, base_model, engine.dtype, threads)
        except AdapterNotFound as exc:
            raise ConfigError(
                f"merged_engines: {name} is not registered ({exc}); register that version "
                "first, or fix `version`"
            ) from None
        except Exception as exc:  # a failed merge must not stop the gateway
            reason = str(exc).splitlines()[0] if str(exc) else ""
            log.error(
                "merging %s for its merged engine failed, %s keeps the LoRA path: %s%s",
                name,
                name,
                type(exc).__name__,
                f": {reason}" if reason else "",
            )
            continue
        launches.append(MergedLaunch(entry, merged_engine_config(engine, entry, merged)))
    return launches
