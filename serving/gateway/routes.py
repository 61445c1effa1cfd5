"""HTTP routes: each one declares its typed body (FastAPI validates it and documents it in
OpenAPI), gets its caller and the body as sent from dependencies, calls a handler, and returns
what it gives back. Errors are turned into OpenAI error bodies by `OpenAIRoute`, the only
exception boundary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse

from serving.gateway.admin import (
    AdapterFiles,
    PromoteBody,
    RegisterBody,
    VersionBody,
    unknown_operation,
)
from serving.gateway.auth import Principal
from serving.gateway.bodies import json_object, optional_json_object, read_body
from serving.gateway.errors import AuthenticationFailed, to_answer
from serving.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ErrorResponse,
    ResponsesRequest,
    invalid_request,
)
from serving.gateway.state import GatewayState
from serving.gateway.streams import EventStream


def error_response(exc: BaseException) -> JSONResponse:
    answer = to_answer(exc)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


class OpenAIRoute(APIRoute):
    """Every exception a route raises becomes one OpenAI error body; never a traceback. A POST
    route's body is read first under the gateway's limits (bodies.read_body); FastAPI's
    validation errors of it become a 400 naming the first field."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        reads_body = "POST" in self.methods

        async def guarded(request: Request) -> Response:
            try:
                if reads_body:
                    limit = state_of(request).config.max_body_bytes
                    request = await read_body(request, limit)
                return await handler(request)
            except RequestValidationError as exc:
                return error_response(invalid_request(exc.errors(), skip=1))  # loc[0]: "body"
            except Exception as exc:
                return error_response(exc)

        return guarded


class EventStreamResponse(EventSourceResponse):
    """An SSE response that closes its stream (and so the engine request) however it ends."""

    def __init__(self, stream: EventStream):
        super().__init__(stream, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.stream = stream

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.stream.aclose()


def state_of(request: Request) -> GatewayState:
    return request.app.state.gateway


def caller(request: Request) -> Principal:
    """Dependency: who sends the request (401 without a known key, before the body counts)."""
    return state_of(request).keys.authenticate(request.headers.get("authorization"))


def admin_caller(request: Request) -> Principal:
    """Dependency: an admin caller (403 for other keys, before the body counts)."""
    principal = caller(request)
    principal.require_admin()
    return principal


# The dependencies are `async def`: FastAPI runs a plain `def` dependency in a worker thread,
# and three thread hops per request cost more than everything they do (bench/gateway_cost.py).
async def _gateway(request: Request) -> GatewayState:
    return state_of(request)


async def _caller(request: Request) -> Principal:
    return caller(request)


async def _admin(request: Request) -> Principal:
    return admin_caller(request)


async def _sent(request: Request) -> dict:
    return json_object(request)


async def _maybe_sent(request: Request) -> dict | None:
    return optional_json_object(request)


Gateway = Annotated[GatewayState, Depends(_gateway)]
Caller = Annotated[Principal, Depends(_caller)]
Admin = Annotated[Principal, Depends(_admin)]
Sent = Annotated[dict, Depends(_sent)]
"""The body as sent (extra fields go to the engine unchanged); the typed parameter beside it
is FastAPI's validated and documented view of the same body. Every route with a body takes it,
also where it passes on only the typed view: its checks (bodies.json_object) run first."""
MaybeSent = Annotated[dict | None, Depends(_maybe_sent)]


def answer(result: dict | EventStream) -> Response:
    if isinstance(result, EventStream):
        return EventStreamResponse(result)
    return JSONResponse(result)


ERRORS = {
    400: "Not a valid request: not JSON, a field missing or out of range",
    401: "No API key, or an unknown one",
    403: "The key may not use this route",
    404: "No such model, adapter or version (or not visible to the key)",
    409: "The adapter is busy with requests in flight; retry after Retry-After",
    413: "The body is larger than gateway.max_body_bytes",
    415: "The body is not declared as JSON",
    422: "The adapter does not fit the base model, or failed to load",
    429: "The gateway is at gateway.max_pending_requests; retry after Retry-After",
    502: "The engine failed on this request",
    503: "No engine can be reached; retry after Retry-After",
    "4XX": "Any other request error",
}
GENERATION_ERRORS = (400, 401, 404, 409, 413, 415, 422, 429, 502, 503)
ADMIN_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 503)
_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
"""Each event's data: a JSON chunk, an error in the OpenAI shape, or [DONE]."""


def documented(*errors: int, stream: bool = False, plain: bool = False) -> dict:
    """The answers a route has besides its 200: `errors`, each in the OpenAI error shape (and
    "4XX", which also keeps FastAPI from documenting its own 422), and with `stream` the
    text/event-stream answer. A `plain` route (text/plain answers) still errs in JSON:
    FastAPI would document its errors' model as text/plain, so they refer to ErrorResponse,
    which the JSON routes put in the schema's components."""
    codes = (*errors, "4XX")
    if plain:
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        responses: dict = {c: {"description": ERRORS[c], "content": error} for c in codes}
    else:
        responses = {c: {"model": ErrorResponse, "description": ERRORS[c]} for c in codes}
    if stream:
        responses[200] = {"content": {"text/event-stream": {"itemSchema": _EVENT}}}
    return responses


# A body without a Content-Type is JSON too (curl -X POST -d, raw httpx): bodies.py refuses the
# declared types that are not JSON, so FastAPI need not be strict about the header.
openai_router = APIRouter(route_class=OpenAIRoute, strict_content_type=False)
admin_router = APIRouter(route_class=OpenAIRoute, prefix="/admin", strict_content_type=False)
ops_router = APIRouter(route_class=OpenAIRoute, strict_content_type=False)


@openai_router.post("/v1/chat/completions", responses=documented(*GENERATION_ERRORS, stream=True))
async def chat_completions(
    request: ChatCompletionRequest, principal: Caller, body: Sent, gateway: Gateway
) -> Response:
    return answer(await gateway.inference.chat(request, body, principal))


@openai_router.post("/v1/completions", responses=documented(*GENERATION_ERRORS, stream=True))
async def completions(
    request: CompletionRequest, principal: Caller, body: Sent, gateway: Gateway
) -> Response:
    return answer(await gateway.inference.completion(request, body, principal))


@openai_router.post("/v1/embeddings", responses=documented(*GENERATION_ERRORS))
async def embeddings(
    request: EmbeddingRequest, principal: Caller, body: Sent, gateway: Gateway
) -> Response:
    return answer(await gateway.inference.embeddings(request, principal))


@openai_router.post("/v1/responses", responses=documented(*GENERATION_ERRORS, stream=True))
async def responses(
    request: ResponsesRequest, principal: Caller, body: Sent, gateway: Gateway
) -> Response:
    return answer(await gateway.inference.responses(request, body, principal))


@openai_router.get("/v1/models", responses=documented(401))
async def list_models(principal: Caller, gateway: Gateway) -> Response:
    return JSONResponse(gateway.inference.models.list(principal))


@openai_router.get("/v1/models/{model:path}", responses=documented(401, 404))
async def retrieve_model(model: str, principal: Caller, gateway: Gateway) -> Response:
    return JSONResponse(gateway.inference.models.retrieve(model, principal))


@admin_router.get("/adapters", responses=documented(401, 403))
async def admin_list(principal: Admin, gateway: Gateway) -> Response:
    return JSONResponse(gateway.admin.list(principal))


@admin_router.post("/adapters", status_code=201, responses=documented(*ADMIN_ERRORS))
async def admin_register(
    request: RegisterBody, principal: Admin, body: Sent, gateway: Gateway
) -> Response:
    return JSONResponse(await gateway.admin.register(request, principal), 201)


OptionalVersion = Annotated[VersionBody, Body()]


@admin_router.post("/adapters/{name}/load", responses=documented(*ADMIN_ERRORS))
async def admin_load(
    name: str, principal: Admin, body: MaybeSent, gateway: Gateway, request: OptionalVersion = None
) -> Response:
    return JSONResponse(await gateway.admin.load(name, request, principal))


@admin_router.post("/adapters/{name}/unload", responses=documented(*ADMIN_ERRORS))
async def admin_unload(
    name: str, principal: Admin, body: MaybeSent, gateway: Gateway, request: OptionalVersion = None
) -> Response:
    return JSONResponse(await gateway.admin.unload(name, request, principal))


@admin_router.post("/adapters/{name}/promote", responses=documented(*ADMIN_ERRORS))
async def admin_promote(
    name: str, request: PromoteBody, principal: Admin, body: Sent, gateway: Gateway
) -> Response:
    return JSONResponse(await gateway.admin.promote(name, request, principal))


@admin_router.get(
    "/adapters/{name}/versions/{version}/files",
    response_model=AdapterFiles,
    responses=documented(401, 403, 404, 422),
)
async def admin_version_files(
    name: str, version: str, principal: Admin, gateway: Gateway
) -> Response:
    """A registered version's files with their sha256, for replicas that fetch adapters
    (docs/serving.md, "Scale-out")."""
    return JSONResponse(await gateway.admin.files(name, version, principal))


_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@admin_router.get(
    "/adapters/{name}/versions/{version}/files/{file}",
    response_class=Response,
    responses={200: {"content": _BINARY}, **documented(401, 403, 404, plain=True)},
)
async def admin_version_file(
    name: str, version: str, file: str, principal: Admin, gateway: Gateway
) -> Response:
    """One file of a registered version, as listed by .../files."""
    path = gateway.admin.file(name, version, file, principal)
    return FileResponse(path, media_type="application/octet-stream")


@admin_router.post("/adapters/{name}/{operation}", include_in_schema=False)
async def admin_operation(
    name: str, operation: str, principal: Caller, body: MaybeSent
) -> Response:
    """Any other operation: 404 naming the known ones."""
    raise unknown_operation(operation)


@ops_router.get("/health")
async def health(gateway: Gateway) -> Response:
    """The process answers; with several worker processes, which one did."""
    if gateway.worker is None:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "ok", "worker": gateway.worker})


@ops_router.get("/ready", responses={503: {"description": "No engine is healthy; the same report"}})
async def ready(request: Request, gateway: Gateway) -> Response:
    """`{"ready": bool}` for anyone (probes send no key); the engines' URLs and adapters only
    for an admin (everyone on a gateway without keys)."""
    report = await gateway.readiness()
    status = 200 if report["ready"] else 503
    try:
        admin = caller(request).admin
    except AuthenticationFailed:
        admin = False
    return JSONResponse(report if admin else {"ready": report["ready"]}, status_code=status)


@ops_router.get(
    "/metrics", response_class=PlainTextResponse, responses=documented(401, 403, plain=True)
)
async def metrics(principal: Admin, gateway: Gateway) -> Response:
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)
