"""The inference engine: a supervised vLLM server (`EngineProcess`), the async client for it
and for remote vLLM servers (`EngineClient`), replicas with failover (`EngineSet`), what they
reload after a restart (`AdapterLedger`), and their typed configs."""

from serving.engine.client import EngineClient
from serving.engine.config import (
    EngineConfig,
    MergedEngineConfig,
    RemoteEngineConfig,
    RestartPolicy,
)
from serving.engine.launch import build_command, build_env
from serving.engine.ledger import AdapterLedger
from serving.engine.process import EngineProcess, EngineState
from serving.engine.protocol import ModelCard
from serving.engine.replicas import EngineSet, Replica
from serving.engine.routing import Choice, ReplicaState, choose_merged, choose_replica

__all__ = [
    "AdapterLedger",
    "Choice",
    "EngineClient",
    "EngineConfig",
    "EngineProcess",
    "EngineSet",
    "EngineState",
    "MergedEngineConfig",
    "ModelCard",
    "RemoteEngineConfig",
    "Replica",
    "ReplicaState",
    "RestartPolicy",
    "build_command",
    "build_env",
    "choose_merged",
    "choose_replica",
]
