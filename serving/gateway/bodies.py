"""Request bodies at the edge, before FastAPI validates them against the route's typed model.

A body is read once, under the gateway's limits, by `read_body` (the route class calls it):
declared as JSON or not declared, at most `max_body_bytes` (counted while it streams in), and
parsed with our own error messages. A problem found there is not raised at once but kept for
the `json_object` dependency, so that the order of answers stays: 401 for a missing key first
(the `caller` dependency runs before it), then 415, 413, a body that is not JSON, one that
Python's json can read but not write back (`check_json`), one that is not an object, and only
then FastAPI's field validation (400 in the OpenAI shape, routes.OpenAIRoute).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

from fastapi import Request

from serving.gateway.errors import GatewayError, InvalidRequest, PayloadTooLarge
from serving.gateway.sites import UnsupportedMediaType

MAX_JSON_DEPTH = 100
"""Request bodies nested deeper are refused (400). Python's json module overflows its recursion
limit somewhere near 1,000 levels, in reading the body or in writing the engine request."""
_STATE = "json_body"


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


async def read_body(request: Request, limit: int) -> Request:
    """Read and parse the body of `request` once; return a request that hands FastAPI the same
    bytes and the same parsed JSON (none when they were refused: the `json_object` dependency
    raises why)."""
    raw, parsed = b"", None
    try:
        check_content_type(request.headers.get("content-type"))
        raw = await _read_limited(request, limit)
        parsed = _parse(raw)
        outcome: tuple[GatewayError | None, object] = (None, parsed)
    except GatewayError as exc:
        raw, outcome = b"", (exc, None)
    setattr(request.state, _STATE, outcome)
    return ReadRequest(request, raw, parsed)


class ReadRequest(Request):
    """A request whose body `read_body` has read: `body()` and `json()` answer from memory
    (FastAPI reads both), so the body is neither read nor parsed twice."""

    def __init__(self, request: Request, raw: bytes, parsed: object):
        super().__init__(request.scope, request.receive)
        self._raw, self._parsed = raw, parsed

    async def body(self) -> bytes:
        return self._raw

    async def json(self) -> object:
        return self._parsed


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return bytes(raw)


def _parse(raw: bytes) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc})") from None
    except RecursionError:  # deeper than json can read; check_json refuses shallower ones
        raise InvalidRequest(too_deep()) from None


def json_object(request: Request) -> dict:
    """Dependency: the body as the client sent it, a JSON object that is safe to pass on
    (extra fields included: they go to the engine unchanged).

    Raises:
        GatewayError: what `read_body` found (415, 413, not JSON), or `check_json`'s 400, or
            400 when the body is not an object (also when there is none).
    """
    body = _checked(request)
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def optional_json_object(request: Request) -> dict | None:
    """Dependency: as `json_object`, for routes whose body may be left out."""
    body = _checked(request)
    if body is not None and not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _checked(request: Request) -> object:
    problem, body = getattr(request.state, _STATE, (None, None))
    if problem is not None:
        raise problem
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
