"""The gateway's OpenAPI schema, made honest: the routes read their bodies raw (so that a bad
body gets an OpenAI error, see routes.json_body), which leaves FastAPI blind to them. Each route
declares its body model and its error answers with `documented`; `openapi_with_bodies` adds the
models to the schema's components and drops FastAPI's 422 answers (the app answers 400)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serving.gateway.admin import PromoteBody, RegisterBody, VersionBody
from serving.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ErrorResponse,
    ResponsesRequest,
)

COMPONENTS = "#/components/schemas/"
MODELS: tuple[type[BaseModel], ...] = (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
    RegisterBody,
    VersionBody,
    PromoteBody,
    ErrorResponse,
)
ERRORS = {
    400: "Not a valid request: not JSON, a field missing or out of range",
    401: "No API key, or an unknown one",
    403: "The key may not use this route",
    404: "No such model, adapter or version (or not visible to the key)",
    409: "The adapter is busy with requests in flight; retry after Retry-After",
    413: "The body is larger than gateway.max_body_bytes",
    422: "The adapter does not fit the base model, or failed to load",
    429: "The gateway is at gateway.max_pending_requests; retry after Retry-After",
    502: "The engine failed on this request",
    503: "No engine can be reached; retry after Retry-After",
}
GENERATION_ERRORS = (400, 401, 404, 409, 413, 422, 429, 502, 503)
ADMIN_ERRORS = (400, 401, 403, 404, 409, 413, 422, 503)


def documented(
    body: type[BaseModel] | None = None,
    *,
    errors: tuple[int, ...] = (),
    required: bool = True,
    stream: bool = False,
) -> dict:
    """Route decorator arguments declaring the JSON `body` the route reads, its `errors` (each
    in the OpenAI error shape) and, with `stream`, its text/event-stream answers."""
    extra: dict = {}
    if body is not None:
        schema = {"$ref": COMPONENTS + body.__name__}
        extra["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    if stream:  # each event's data: a JSON chunk, an error in the OpenAI shape, or [DONE]
        event = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
        extra["responses"] = {"200": {"content": {"text/event-stream": {"itemSchema": event}}}}
    error = {"application/json": {"schema": {"$ref": COMPONENTS + ErrorResponse.__name__}}}
    responses = {code: {"description": ERRORS[code], "content": error} for code in errors}
    return {"openapi_extra": extra, "responses": responses}


def openapi_with_bodies(app: FastAPI) -> Callable[[], dict]:
    """`app.openapi`, plus the models `documented` refers to, minus FastAPI's 422
    "Validation Error" answers: the app answers those with 400 in the OpenAI shape (app.py)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema["paths"].values():
                for operation in path.values():
                    if operation["responses"].get("422", {}).get("description") == (
                        "Validation Error"
                    ):
                        del operation["responses"]["422"]
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            refs = [(model, "validation") for model in MODELS]
            _, models = models_json_schema(refs, ref_template=COMPONENTS + "{model}")
            components.update(models["$defs"])
        return app.openapi_schema

    return openapi
