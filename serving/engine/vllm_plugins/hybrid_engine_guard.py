"""ASGI middleware that the supervisor hands to vLLM (`--middleware
hybrid_engine_guard.EngineGuard`, this folder on the child's PYTHONPATH): every route but
`/health` needs `Authorization: Bearer $VLLM_API_KEY`.

vLLM's own `--api-key` guards only paths under /v1, /v2, /inference and /cohere; its
SageMaker route `/invocations` (chat with any adapter), `/metrics`, `/tokenize` and the
dev-mode routes stay open. This module is loaded by vLLM's interpreter, which may be another
environment than Hybrid's, so it imports the standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

OPEN_PATHS = frozenset({"/health"})
"""Liveness only: the supervisor's watchdog probes it without a key."""

_UNAUTHORIZED = json.dumps(
    {
        "error": {
            "message": "this engine is private to its Hybrid gateway; send the engine's key",
            "type": "Unauthorized",
            "param": None,
            "code": "unauthorized",
        }
    }
).encode()


class EngineGuard:
    """Refuse every request without the engine key (401), except `OPEN_PATHS`."""

    def __init__(self, app):
        self.app = app
        key = os.environ.get("VLLM_API_KEY", "")
        self._digest = hashlib.sha256(key.encode()).digest() if key else None

    def _allowed(self, scope) -> bool:
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return False
                digest = hashlib.sha256(token.strip().encode("latin-1")).digest()
                return hmac.compare_digest(digest, self._digest)
        return False

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] not in ("http", "websocket")
            or self._digest is None
            or scope.get("path", "") in OPEN_PATHS
            or self._allowed(scope)
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_UNAUTHORIZED)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": _UNAUTHORIZED})
