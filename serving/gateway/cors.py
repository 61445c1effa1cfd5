"""Cross-origin access for the chat widget, which runs on other sites' pages.

Only the routes the widget calls answer cross-origin requests: `GET /v1/models`,
`GET /v1/models/{id}` and `POST /v1/chat/completions`; never `/v1/completions`, the admin
routes or `/metrics`. No cookies are involved: each request carries its own Bearer key, so what
protects a gateway that allows every origin is that the key pasted into a site is scoped to the
app it embeds (`hybrid keys new --model APP`). A gateway without keys (loopback only) allows
loopback origins and `gateway.allowed_origins` only, so a website its user happens to visit
cannot drive the local models (`sites.SiteGuard` refuses such requests outright).
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WIDGET_ROUTES = re.compile(r"^/v1/(models(/.+)?|chat/completions)$")
LOOPBACK_ORIGIN = re.compile(r"^https?://(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d{1,5})?$")
ALLOW_METHODS = "GET, POST"
ALLOW_HEADERS = "Authorization, Content-Type"
EXPOSE_HEADERS = "Retry-After"
PREFLIGHT_MAX_AGE_S = "600"


def origin_allowed(origin: str, any_origin: bool, listed: frozenset[str] = frozenset()) -> bool:
    """Whether a page from `origin` may call the widget routes (`null` origins never may)."""
    if origin == "null":  # sandboxed frames and file:// pages: anyone can make one
        return False
    return any_origin or LOOPBACK_ORIGIN.match(origin) is not None or origin.lower() in listed


class WidgetCORS:
    """ASGI middleware adding CORS headers to the widget routes for allowed origins.

    Args:
        app: the gateway app.
        any_origin: allow every origin (the gateway has keys); else loopback origins only...
        listed: ...and these (`gateway.allowed_origins`).
    """

    def __init__(self, app: ASGIApp, any_origin: bool, listed: tuple[str, ...] = ()):
        self.app = app
        self.any_origin = any_origin
        self.listed = frozenset(listed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not WIDGET_ROUTES.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        origin = request_headers.get("origin")
        if origin is None or not origin_allowed(origin, self.any_origin, self.listed):
            await self.app(scope, receive, send)  # the browser refuses the answer itself
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in request_headers:
            await self._preflight(origin, request_headers, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: str, request_headers: Headers, send: Send) -> None:
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE_S.encode()),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        if request_headers.get("access-control-request-private-network") == "true":
            # Chrome asks before a public page calls a gateway on a private address.
            headers.append((b"access-control-allow-private-network", b"true"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
