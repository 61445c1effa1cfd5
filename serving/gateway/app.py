"""The FastAPI application factory."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from serving.gateway.cors import WidgetCORS
from serving.gateway.errors import GatewayError
from serving.gateway.playground import playground_router
from serving.gateway.routes import admin_router, error_response, openai_router, ops_router
from serving.gateway.sites import SiteGuard
from serving.gateway.state import GatewayState


def create_app(state: GatewayState) -> FastAPI:
    """The gateway app for `state`; serve it with uvicorn (`hybrid serve` does)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="Hybrid gateway",
        summary="OpenAI-compatible chat API: base model, LoRA adapters and apps on vLLM.",
        version="1",
        lifespan=lifespan,
    )
    app.state.gateway = state
    app.include_router(openai_router)
    app.include_router(admin_router)
    app.include_router(ops_router)
    app.include_router(playground_router)
    config = state.config
    app.add_middleware(  # docs/playground.md
        WidgetCORS, any_origin=config.auth.enabled, listed=config.allowed_origins
    )
    app.add_middleware(SiteGuard, config=config)  # outermost: before CORS answers a preflight

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # unknown route, bad method
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(GatewayError(str(exc.detail), status=exc.status_code, code=code))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(GatewayError(f"invalid request: {exc.errors()[:1]}", status=400))

    return app
