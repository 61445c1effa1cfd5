"""The adapter registry: versioned LoRA adapters on disk, each checked against the served base
model before it is served."""

from serving.adapters.base import ServedBase, describe_base
from serving.adapters.errors import AdapterNotFound, AdapterRejected, RegistryError
from serving.adapters.registry import AdapterRegistry, AdapterVersion, ResolvedAdapter

__all__ = [
    "AdapterNotFound",
    "AdapterRegistry",
    "AdapterRejected",
    "AdapterVersion",
    "RegistryError",
    "ResolvedAdapter",
    "ServedBase",
    "describe_base",
]
