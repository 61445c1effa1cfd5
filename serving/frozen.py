"""The base of every typed config and request body of the serving layer that refuses unknown
keys: frozen (a config cannot change under a running server) and strict about typos.

retrieval/, finetune/ and hybrid/ keep their own copy of this class: serving/ never imports another
layer (tests/test_architecture.py), so the layers cannot share one base."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
