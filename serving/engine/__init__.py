"""The inference engine: a supervised vLLM server (`EngineProcess`), async clients for it and
for remote vLLM servers (`EngineClient`, `EngineSet`), and their typed configs."""

from serving.engine.client import AdapterLedger, EngineClient, EngineSet, Replica
from serving.engine.config import EngineConfig, RemoteEngineConfig, RestartPolicy
from serving.engine.process import EngineProcess, EngineState, build_command, build_env
from serving.engine.protocol import ModelCard
from serving.engine.routing import Choice, ReplicaState, choose_replica

__all__ = [
    "AdapterLedger",
    "Choice",
    "EngineClient",
    "EngineConfig",
    "EngineProcess",
    "EngineSet",
    "EngineState",
    "ModelCard",
    "RemoteEngineConfig",
    "Replica",
    "ReplicaState",
    "RestartPolicy",
    "build_command",
    "build_env",
    "choose_replica",
]
