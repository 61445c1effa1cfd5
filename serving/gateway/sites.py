"""Which web pages and host names may drive the gateway: the guard against cross-site requests
and DNS rebinding.

A browser sends some requests from any page without asking the server first (no CORS
preflight): form posts and `fetch()` with a `text/plain` body. A gateway without keys (loopback
only) would run them with the visitor's local rights, so it answers only

* requests addressed to itself: `Host` a loopback name or address on the port the request came
  in on, the address it came in on, or one of `gateway.allowed_hosts` (a rebound DNS name such
  as `attacker.example:8080` is refused), and
* requests from no page or from an allowed page: no `Origin`, the gateway's own origin, a
  loopback page (it runs on this machine already), or one of `gateway.allowed_origins`.

The admin routes and `/metrics` answer no page but the gateway's own, keys or not. With keys,
any other page is harmless: a browser never attaches the Bearer key by itself. The routes also
refuse bodies that are not declared JSON (`bodies.read_body`), the one kind a page can send
without a preflight.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.gateway.config import GatewayConfig, is_loopback
from serving.gateway.cors import LOOPBACK_ORIGIN
from serving.gateway.errors import GatewayError, error_body

SAME_ORIGIN_ONLY = ("/admin", "/metrics")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class HostNotAllowed(GatewayError):
    status = 403
    type = "permission_error"
    code = "host_not_allowed"


class UnsupportedMediaType(GatewayError):
    """A body declared as something other than JSON (`bodies.check_content_type`)."""

    status = 415
    code = "unsupported_media_type"


class CrossSiteRequest(GatewayError):
    status = 403
    type = "permission_error"
    code = "cross_site_request"


def authority(value: str, scheme: str) -> tuple[str, int] | None:
    """(lower-case host without brackets or trailing dot, port) of a `Host` header value or an
    origin's netloc; None if it does not parse."""
    try:
        parts = urlsplit("//" + value)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path or parts.query:
        return None
    return parts.hostname.rstrip("."), port if port is not None else DEFAULT_PORTS.get(scheme, 80)


def origin_authority(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an `Origin` header; None for `null` or anything malformed."""
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme.lower() not in DEFAULT_PORTS:
        return None
    parsed = authority(rest, scheme.lower())
    return None if parsed is None else (scheme.lower(), *parsed)


class SiteGuard:
    """ASGI middleware refusing foreign hosts and cross-site pages (see the module docstring)
    with a 403 in OpenAI's error shape.

    Args:
        app: the gateway app.
        config: its settings: whether keys are on, `allowed_hosts`, `allowed_origins`, `port`.
    """

    def __init__(self, app: ASGIApp, config: GatewayConfig):
        self.app = app
        self.keyed = config.auth.enabled
        self.port = config.port
        self.allowed_hosts = {_allowed(h) for h in config.allowed_hosts}
        self.allowed_origins = set(config.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope, Headers(scope=scope))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_body(refusal.message, refusal.type, refusal.code)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope, headers: Headers) -> GatewayError | None:
        """Why this request is refused, or None."""
        scheme = scope.get("scheme", "http")
        host_header = headers.get("host", "")
        host = authority(host_header, scheme)
        if not self.keyed and not self._host_allowed(host, host_header, scope):
            shown = host_header[:200] or "(none)"
            return HostNotAllowed(
                f"this gateway has no API keys, so it answers only requests addressed to it "
                f"on loopback, and Host '{shown}' is not (DNS rebinding?); if you reach it "
                "through a tunnel or proxy, add that name to gateway.allowed_hosts"
            )
        origin = headers.get("origin")
        if origin is None:
            return None
        page = origin_authority(origin)
        if page is not None and host is not None and page[1:] == host:
            return None  # the gateway's own pages (the playground)
        if scope["path"].startswith(SAME_ORIGIN_ONLY):
            return CrossSiteRequest(
                f"the admin routes and /metrics answer no web page but the gateway's own; "
                f"this request came from '{origin[:200]}'"
            )
        if (
            self.keyed
            or LOOPBACK_ORIGIN.fullmatch(origin)
            or origin.lower() in self.allowed_origins
        ):
            return None
        return CrossSiteRequest(
            f"this gateway has no API keys, so web pages of other sites may not use it, and this "
            f"request came from '{origin[:200]}'; list the site in gateway.allowed_origins, or "
            "configure API keys (`hybrid keys new`)"
        )

    def _host_allowed(self, host: tuple[str, int] | None, raw: str, scope: Scope) -> bool:
        if host is None:
            return False
        name, port = host
        server = scope.get("server") or (None, self.port)
        if (name, None) in self.allowed_hosts or (name, port) in self.allowed_hosts:
            return True
        if port != server[1]:
            return False
        # The address the request came in on (an IP; "testserver" under Starlette's TestClient)
        return is_loopback(name) or name == str(server[0]).lower()


def _allowed(entry: str) -> tuple[str, int | None]:
    """An allowed_hosts entry as (host, port or None for any)."""
    parts = urlsplit("//" + entry)
    return (parts.hostname or entry).rstrip("."), parts.port
