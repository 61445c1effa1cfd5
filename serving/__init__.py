"""serving: vLLM engine supervision and clients (`serving.engine`), the adapter registry
(`serving.adapters`), and the errors they raise (`serving.errors`)."""

from serving.engine import (
    EngineClient,
    EngineConfig,
    EngineProcess,
    EngineSet,
    RemoteEngineConfig,
    RestartPolicy,
)
from serving.errors import (
    AdapterAlreadyLoaded,
    AdapterLoadError,
    AdapterNotLoaded,
    EngineCrashed,
    EngineRequestError,
    EngineStartError,
    EngineUnavailable,
    InvalidAdapterName,
    NoHealthyEngine,
    ServingError,
)

__all__ = [
    "AdapterAlreadyLoaded",
    "AdapterLoadError",
    "AdapterNotLoaded",
    "EngineClient",
    "EngineConfig",
    "EngineCrashed",
    "EngineProcess",
    "EngineRequestError",
    "EngineSet",
    "EngineStartError",
    "EngineUnavailable",
    "InvalidAdapterName",
    "NoHealthyEngine",
    "RemoteEngineConfig",
    "RestartPolicy",
    "ServingError",
]
