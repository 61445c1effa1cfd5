"""HTTP routes: each one reads the request, calls a handler, and returns what it gives back.
Errors are turned into OpenAI error bodies by `OpenAIRoute`, the only exception boundary."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.routing import APIRoute

from serving.gateway.admin import PromoteBody, RegisterBody, VersionBody
from serving.gateway.errors import AuthenticationFailed, InvalidRequest, PayloadTooLarge, to_answer
from serving.gateway.openapi import ADMIN_ERRORS, GENERATION_ERRORS, documented
from serving.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
)
from serving.gateway.sites import UnsupportedMediaType
from serving.gateway.state import GatewayState
from serving.gateway.streams import EventStream

MAX_JSON_DEPTH = 100
"""Request bodies nested deeper are refused (400). Python's json module overflows its recursion
limit somewhere near 1,000 levels, in reading the body or in writing the engine request."""


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


def check_content_type(content_type: str | None) -> None:
    """A body must be declared JSON (`application/json`, `application/*+json`) or not declared
    at all. Web pages of other sites can send `text/plain`, form and multipart bodies without
    the browser asking the gateway first (no CORS preflight), so those are refused even when
    they hold JSON; so is anything else declared, and even when the body is empty (an
    empty cross-site form would still unload an adapter).

    Raises:
        UnsupportedMediaType: naming the type and the fix.
    """
    if content_type is None:  # httpx/requests with a raw body, curl -X POST without -d
        return
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        f"the request body is declared as '{content_type[:100]}'; send JSON with "
        "'Content-Type: application/json' (curl: --json, or -H 'Content-Type: "
        "application/json' with -d)"
    )


async def json_body(request: Request) -> object:
    check_content_type(request.headers.get("content-type"))
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
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc})") from None
    except RecursionError:  # deeper than json can read; check_json refuses shallower ones
        raise InvalidRequest(too_deep()) from None
    check_json(body)
    return body


def check_json(body: object) -> None:
    """Refuse what Python's json module reads but cannot write back into the engine request
    (which would then fail as a 500): NaN and infinite numbers, unpaired UTF-16 surrogates
    (`"\\ud800"`), and nesting deeper than MAX_JSON_DEPTH. It writes the body once, as the
    engine client will, and scans that text; both at C speed.

    Raises:
        InvalidRequest: naming the problem.
    """
    try:
        text = json.dumps(body, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except RecursionError:
        raise InvalidRequest(too_deep()) from None
    except UnicodeEncodeError:
        raise InvalidRequest(
            'the request body holds an unpaired UTF-16 surrogate escape (e.g. "\\ud800"), '
            "which is not Unicode text; escape a character outside the BMP as a pair"
        ) from None
    except ValueError:
        raise InvalidRequest(
            "the request body holds NaN or an infinite number (e.g. 1e999), which JSON cannot "
            "carry; send finite numbers"
        ) from None
    if json_nesting(text) > MAX_JSON_DEPTH:
        raise InvalidRequest(too_deep())


_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_nesting(text: str) -> int:
    """How deep the JSON document `text` nests its arrays and objects."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def too_deep() -> str:
    return f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"


def answer(result: dict | EventStream) -> Response:
    if isinstance(result, EventStream):
        return EventStreamResponse(result)
    return JSONResponse(result)


openai_router = APIRouter(route_class=OpenAIRoute)
admin_router = APIRouter(route_class=OpenAIRoute, prefix="/admin")
ops_router = APIRouter(route_class=OpenAIRoute)


@openai_router.post(
    "/v1/chat/completions",
    **documented(ChatCompletionRequest, errors=GENERATION_ERRORS, stream=True),
)
async def chat_completions(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return answer(await gateway.inference.chat(await json_body(request), principal))


@openai_router.post(
    "/v1/completions", **documented(CompletionRequest, errors=GENERATION_ERRORS, stream=True)
)
async def completions(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return answer(await gateway.inference.completion(await json_body(request), principal))


@openai_router.post("/v1/embeddings", **documented(EmbeddingRequest, errors=GENERATION_ERRORS))
async def embeddings(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return answer(await gateway.inference.embeddings(await json_body(request), principal))


@openai_router.post(
    "/v1/responses", **documented(ResponsesRequest, errors=GENERATION_ERRORS, stream=True)
)
async def responses(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return answer(await gateway.inference.responses(await json_body(request), principal))


@openai_router.get("/v1/models", **documented(errors=(401,)))
async def list_models(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return JSONResponse(gateway.inference.models.list(principal))


@openai_router.get("/v1/models/{model:path}", **documented(errors=(401, 404)))
async def retrieve_model(model: str, request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return JSONResponse(gateway.inference.models.retrieve(model, principal))


@admin_router.get("/adapters", **documented(errors=(401, 403)))
async def admin_list(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return JSONResponse(gateway.admin.list(principal))


@admin_router.post("/adapters", status_code=201, **documented(RegisterBody, errors=ADMIN_ERRORS))
async def admin_register(request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    return JSONResponse(await gateway.admin.register(await json_body(request), principal), 201)


# Each operation has a route of its own so that its body is documented; all three go through
# `admin_operation`, which also answers unknown operations (404 naming the known ones).
@admin_router.post(
    "/adapters/{name}/load", **documented(VersionBody, errors=ADMIN_ERRORS, required=False)
)
async def admin_load(name: str, request: Request) -> Response:
    return await admin_operation(name, "load", request)


@admin_router.post(
    "/adapters/{name}/unload", **documented(VersionBody, errors=ADMIN_ERRORS, required=False)
)
async def admin_unload(name: str, request: Request) -> Response:
    return await admin_operation(name, "unload", request)


@admin_router.post("/adapters/{name}/promote", **documented(PromoteBody, errors=ADMIN_ERRORS))
async def admin_promote(name: str, request: Request) -> Response:
    return await admin_operation(name, "promote", request)


@admin_router.post("/adapters/{name}/{operation}", include_in_schema=False)
async def admin_operation(name: str, operation: str, request: Request) -> Response:
    gateway = state_of(request)
    principal = gateway.keys.authenticate(request.headers.get("authorization"))
    body = await json_body(request)
    return JSONResponse(await gateway.admin.operate(operation, name, body, principal))


@ops_router.get("/health")
async def health() -> Response:
    return JSONResponse({"status": "ok"})


@ops_router.get("/ready", responses={503: {"description": "No engine is healthy; the same report"}})
async def ready(request: Request) -> Response:
    """`{"ready": bool}` for anyone (probes send no key); the engines' URLs and adapters only
    for an admin (everyone on a gateway without keys)."""
    gateway = state_of(request)
    report = await gateway.readiness()
    status = 200 if report["ready"] else 503
    try:
        admin = gateway.keys.authenticate(request.headers.get("authorization")).admin
    except AuthenticationFailed:
        admin = False
    return JSONResponse(report if admin else {"ready": report["ready"]}, status_code=status)


@ops_router.get("/metrics", response_class=PlainTextResponse, **documented(errors=(401, 403)))
async def metrics(request: Request) -> Response:
    gateway = state_of(request)
    gateway.keys.authenticate(request.headers.get("authorization")).require_admin()
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)
