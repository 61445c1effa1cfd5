"""The one place that turns exceptions into HTTP answers in OpenAI's error shape:
`{"error": {"message", "type", "param", "code"}}`.

User mistakes are 4xx; an engine that cannot be reached is 503 with a Retry-After hint; anything
unexpected is a 500 whose body says only that, while the traceback goes to the server log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from serving.adapters.errors import AdapterNotFound, AdapterRejected, RegistryError
from serving.adapters.manager import AdapterBusy
from serving.errors import (
    AdapterLoadError,
    AdapterNotLoaded,
    EngineRequestError,
    EngineUnavailable,
    InvalidAdapterName,
)

log = logging.getLogger("serving.gateway")

RETRY_AFTER_S = 5
TOOLS_OFF_FIX = (
    " (this engine runs without tool calling: set engine.tool_call_parser in hybrid.yaml, e.g. "
    "hermes for ChatML models, or start the remote vLLM servers with --enable-auto-tool-choice "
    "--tool-call-parser NAME)"
)


class GatewayError(Exception):
    """An error the gateway answers with as it is (status, OpenAI type and code, message)."""

    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}


class InvalidRequest(GatewayError):
    """The body is not a valid request (400)."""

    code = "invalid_request"


class ModelNotFound(GatewayError):
    """No base model, adapter or app by that name is visible to the caller (404)."""

    status = 404
    code = "model_not_found"


class AuthenticationFailed(GatewayError):
    """No API key, or one the gateway does not know (401)."""

    status = 401
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """A known key that may not use this route (403), e.g. a plain key on an admin route."""

    status = 403
    type = "permission_error"
    code = "permission_denied"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class TooManyRequests(GatewayError):
    """The gateway holds as many requests as it may (`gateway.max_pending_requests`)."""

    status = 429
    type = "rate_limit_error"
    code = "too_many_requests"


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


MAX_MESSAGE_CHARS = 2000
"""Error messages quote what the client sent (a model name, a path); a 4 MiB model name is not
sent back whole."""


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def to_answer(exc: BaseException) -> ErrorAnswer:
    """The HTTP answer for any exception raised while handling a request."""
    if isinstance(exc, GatewayError):
        return ErrorAnswer(
            exc.status, error_body(exc.message, exc.type, exc.code, exc.param), exc.headers
        )
    if isinstance(exc, AdapterBusy):
        return ErrorAnswer(
            409, error_body(str(exc), "invalid_request_error", "adapter_busy"), {"Retry-After": "5"}
        )
    if isinstance(exc, AdapterNotFound):
        return ErrorAnswer(404, error_body(str(exc), "invalid_request_error", "model_not_found"))
    if isinstance(exc, AdapterRejected | InvalidAdapterName):
        return ErrorAnswer(422, error_body(str(exc), "invalid_request_error", "adapter_rejected"))
    if isinstance(exc, AdapterLoadError):
        return ErrorAnswer(
            422, error_body(str(exc), "invalid_request_error", "adapter_load_failed")
        )
    if isinstance(exc, AdapterNotLoaded):
        return ErrorAnswer(404, error_body(str(exc), "invalid_request_error", "adapter_not_loaded"))
    if isinstance(exc, RegistryError):
        return ErrorAnswer(500, error_body(str(exc), "server_error", "registry_error"))
    if isinstance(exc, EngineUnavailable):
        return ErrorAnswer(
            503,
            error_body(
                f"the inference engine is unavailable; retry in {RETRY_AFTER_S} s",
                "service_unavailable",
                "engine_unavailable",
            ),
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, EngineRequestError):
        # vLLM refused a generation request: its 4xx are the caller's mistakes (context too
        # long, bad sampling values) and its message says which; its 5xx are ours.
        if 400 <= exc.status_code < 500 and exc.status_code != 401:
            message = exc.engine_message or str(exc)
            if "tool-call-parser" in message:
                message += TOOLS_OFF_FIX
            return ErrorAnswer(
                400 if exc.status_code == 422 else exc.status_code,
                error_body(message, "invalid_request_error", "engine_rejected"),
            )
        log.error("engine error: %s", exc)
        return ErrorAnswer(
            502,
            error_body(
                f"the inference engine failed on this request ({exc.status_code}); "
                "the gateway log has details",
                "server_error",
                "engine_error",
            ),
        )
    log.error("unexpected error while handling a request", exc_info=exc)
    return ErrorAnswer(
        500,
        error_body(
            "internal error in the gateway; the server log has the details",
            "server_error",
            "internal_error",
        ),
    )
