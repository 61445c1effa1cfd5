"""The base of every typed config of the finetune layer that refuses unknown keys: frozen (a
config cannot change once validated) and strict about typos.

retrieval/, finetune/ and serving/ each keep their own copy of this class: they never import each
other (tests/test_architecture.py), so they cannot share one base; hybrid/ keeps its own too,
so that its configs do not depend on a layer they only compose.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
