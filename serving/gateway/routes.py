"""HTTP routes: each one reads the request, calls a handler, and returns what it gives back.
Errors are turned into OpenAI error bodies by `OpenAIRoute`, the only exception boundary."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute

from serving.gateway.errors import InvalidRequest, PayloadTooLarge, to_answer
from serving.gateway.handlers import EventStream
from serving.gateway.state import GatewayState


def error_response(exc: BaseException) -> JSONResponse:
    answer = to_answer(exc)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


class OpenAIRoute(APIRoute):
    """Every exception a route raises becomes one OpenAI error body; never a traceback."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return error_response(exc)

        return guarded


class EventStreamResponse(StreamingResponse):
    """An SSE response that closes its stream (and so the engine request) however it ends."""

    def __init__(self, stream: EventStream):
        super().__init__(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.stream = stream

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.stream.aclose()


def state_of(request: Request) -> GatewayState:
    return request.app.state.gateway


async def json_body(request: Request) -> object:
    limit = state_of(request).config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc})") from None


def answer(result: dict | EventStream) -> Response:
    if isinstance(result, EventStream):
        return EventStreamResponse(result)
    return JSONResponse(result)


openai_router = APIRouter(route_class=OpenAIRoute)
admin_router = APIRouter(route_class=OpenAIRoute, prefix="/admin")
ops_router = APIRouter(route_class=OpenAIRoute)


@openai_router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return answer(await gateway.inference.chat(await json_body(request), principal))


@openai_router.post("/v1/completions")
async def completions(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return answer(await gateway.inference.completion(await json_body(request), principal))


@openai_router.get("/v1/models")
async def list_models(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return JSONResponse(gateway.inference.list_models(principal))


@openai_router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return JSONResponse(gateway.inference.retrieve_model(model, principal))


@admin_router.get("/adapters")
async def admin_list(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return JSONResponse(gateway.admin.list(principal))


@admin_router.post("/adapters")
async def admin_register(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return JSONResponse(await gateway.admin.register(await json_body(request), principal), 201)


@admin_router.post("/adapters/{name}/{operation}")
async def admin_operation(name: str, operation: str, request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    body = await json_body(request)
    return JSONResponse(await gateway.admin.operate(operation, name, body, principal))


@ops_router.get("/health")
async def health() -> Response:
    return JSONResponse({"status": "ok"})


@ops_router.get("/ready")
async def ready(request: Request) -> Response:
    report = await state_of(request).readiness()
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


@ops_router.get("/metrics")
async def metrics(request: Request) -> Response:
    gateway = state_of(request)
    gateway.keys.authenticate(request.headers.get("authorization")).require_admin()
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)
