"""GET /v1/models: what a caller may use (the base model, adapters and their versions, apps,
embedders), as OpenAI model cards, and the 404 for a model a caller may not use."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from serving.adapters.errors import AdapterNotFound
from serving.adapters.manager import AdapterManager
from serving.gateway.auth import Principal
from serving.gateway.errors import ModelNotFound

MAX_LISTED = 20
"""A 404 for an unknown model names at most this many of the caller's models."""


@dataclass(frozen=True)
class ModelInfo:
    id: str
    parent: str | None = None
    root: str | None = None
    kind: str = "model"
    extra: dict = field(default_factory=dict)
    created: int | None = None
    """Unix time the model came to be (an adapter version: its registration); default: when
    the gateway started."""


class ModelSource(Protocol):
    """Models served by something other than the engine (apps, embedders)."""

    def models(self) -> Sequence[ModelInfo]: ...

    def owns(self, model: str) -> bool: ...


class ModelCatalog:
    """Every model id the gateway answers to, and which of them a caller may see."""

    def __init__(self, manager: AdapterManager, sources: Sequence[ModelSource] = ()):
        self.manager = manager
        self.sources = list(sources)
        self.started = int(time.time())
        """When this gateway started: the `created` of the base model and of apps."""

    def infos(self) -> list[ModelInfo]:
        base = self.manager.base_name
        infos = [ModelInfo(base, root=base, kind="base")]
        loaded = self.manager.loaded()
        current: dict[str, tuple[str, int | None]] = {}
        for version in self.manager.registry.list():
            created = _unix_time(version.registered_at)
            if version.current:
                current[version.name] = (version.engine_name, created)
            infos.append(
                ModelInfo(
                    version.engine_name,
                    parent=base,
                    root=version.engine_name,
                    kind="adapter_version",
                    extra={"loaded": version.engine_name in loaded, "current": version.current},
                    created=created,
                )
            )
        for name, (engine_name, created) in sorted(current.items()):
            infos.append(
                ModelInfo(name, parent=base, root=engine_name, kind="adapter", created=created)
            )
        for source in self.sources:
            infos.extend(source.models())
        return infos

    def list(self, principal: Principal) -> dict:
        cards = [self._card(info) for info in self.infos() if principal.may_use(info.id)]
        return {"object": "list", "data": cards}

    def retrieve(self, model: str, principal: Principal) -> dict:
        if principal.may_use(model):
            for info in self.infos():
                if info.id == model:
                    return self._card(info)
        raise self.unknown(model, principal)

    def unknown(self, model: str, principal: Principal) -> ModelNotFound:
        """The 404 for a model `principal` cannot use, whether it exists or not (others' models
        are not even named): it lists only the models this caller may use."""
        visible = [info.id for info in self.infos() if principal.may_use(info.id)]
        shown = ", ".join(visible[:MAX_LISTED]) or "none"
        if len(visible) > MAX_LISTED:
            shown += f" and {len(visible) - MAX_LISTED} more"
        return ModelNotFound(
            f"model '{model}' does not exist; models you may use: {shown} (GET /v1/models)",
            param="model",
        )

    def exists(self, model: str) -> bool:
        if any(source.owns(model) for source in self.sources):
            return True
        try:
            self.manager.resolve(model)
        except AdapterNotFound:
            return False
        return True

    def _card(self, info: ModelInfo) -> dict:
        return {
            "id": info.id,
            "object": "model",
            "created": info.created if info.created is not None else self.started,
            "owned_by": "hybrid",
            "root": info.root or info.id,
            "parent": info.parent,
            "hybrid": {"kind": info.kind, **info.extra},
        }


def _unix_time(iso: str) -> int | None:
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except (TypeError, ValueError):
        return None
