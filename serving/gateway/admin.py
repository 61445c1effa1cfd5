"""The admin API's logic, free of FastAPI: list, register, load, unload and promote adapters.
Every call needs an admin principal; every outcome is counted in the metrics."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.adapters.manager import AdapterManager
from serving.adapters.registry import AdapterVersion
from serving.gateway.auth import Principal
from serving.gateway.errors import GatewayError, InvalidRequest, to_answer
from serving.gateway.metrics import GatewayMetrics


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegisterBody(_Body):
    path: str = Field(min_length=1)
    """Adapter folder on the gateway's machine."""
    name: str = Field(min_length=1)
    version: str | None = None
    promote: bool = True


class VersionBody(_Body):
    version: str | None = None


class PromoteBody(_Body):
    version: str = Field(min_length=1)


def _parse(model: type[_Body], body: object) -> _Body:
    if body is not None and not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequest(f"'{param}': {first['msg']}", param=param) from None


def describe(version: AdapterVersion, loaded: dict[str, list[str]], in_flight: int) -> dict:
    return {
        "name": version.name,
        "version": version.version,
        "id": version.engine_name,
        "current": version.current,
        "rank": version.rank,
        "registered_at": version.registered_at,
        "foreign": version.foreign,
        "loaded_on": loaded.get(version.engine_name, []),
        "in_flight": in_flight,
    }


class AdminHandler:
    def __init__(self, manager: AdapterManager, metrics: GatewayMetrics):
        self.manager = manager
        self.metrics = metrics

    async def _counted(self, operation: str, coro):
        try:
            result = await coro
        except BaseException as exc:
            self.metrics.adapter_operations.labels(operation, str(to_answer(exc).status)).inc()
            raise
        self.metrics.adapter_operations.labels(operation, "ok").inc()
        return result

    def list(self, principal: Principal) -> dict:
        principal.require_admin()
        loaded = self.manager.loaded()
        return {
            "base_model": self.manager.base_name,
            "adapters": [
                describe(v, loaded, self.manager.in_flight(v.engine_name))
                for v in self.manager.registry.list()
            ],
        }

    async def register(self, body: object, principal: Principal) -> dict:
        principal.require_admin()
        request = _parse(RegisterBody, body)
        assert isinstance(request, RegisterBody)
        version = await self._counted(
            "register",
            self.manager.register(
                Path(request.path), request.name, request.version, promote=request.promote
            ),
        )
        return describe(version, self.manager.loaded(), 0)

    async def load(self, name: str, body: object, principal: Principal) -> dict:
        principal.require_admin()
        request = _parse(VersionBody, body)
        assert isinstance(request, VersionBody)
        ref = f"{name}@{request.version}" if request.version else name
        version, urls = await self._counted("load", self.manager.load(ref))
        return {"id": version.engine_name, "loaded_on": urls}

    async def unload(self, name: str, body: object, principal: Principal) -> dict:
        principal.require_admin()
        request = _parse(VersionBody, body)
        assert isinstance(request, VersionBody)
        ref = f"{name}@{request.version}" if request.version else name
        unloaded = await self._counted("unload", self.manager.unload(ref))
        return {"unloaded": unloaded}

    async def promote(self, name: str, body: object, principal: Principal) -> dict:
        principal.require_admin()
        request = _parse(PromoteBody, body)
        assert isinstance(request, PromoteBody)
        promotion = await self._counted("promote", self.manager.promote(name, request.version))
        return {
            "name": promotion.name,
            "previous": promotion.previous,
            "current": promotion.current,
            "previous_unloading": promotion.retiring,
        }

    async def operate(self, operation: str, name: str, body: object, principal: Principal) -> dict:
        """POST /admin/adapters/{name}/{operation}."""
        operations = {"load": self.load, "unload": self.unload, "promote": self.promote}
        if operation not in operations:
            raise GatewayError(
                f"unknown adapter operation '{operation}'; use one of {', '.join(operations)}",
                status=404,
                code="not_found",
            )
        return await operations[operation](name, body, principal)
