"""The playground page (`/playground`) and the embeddable chat widget (`/widget.js`).

Both are plain HTML/JS/CSS shipped in `serving/gateway/static/` (package data: no CDN, no build
step), read once and served from memory. They talk to the gateway's own OpenAI routes like any
other client, so they need no state and no route of their own. `/widget.js` is `chat.js` (the
API client and answer rendering the playground uses too) and `widget.js` wrapped in one function
with the widget's CSS, so a site pastes a single tag and nothing leaks into its global scope.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

STATIC = resources.files("serving.gateway") / "static"
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}
PLAYGROUND_ASSETS = frozenset({"chat.js", "chat.css", "playground.js", "playground.css"})
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

playground_router = APIRouter(include_in_schema=False)


@functools.cache
def asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@functools.cache
def widget_script() -> bytes:
    css = asset("chat.css").decode() + asset("widget.css").decode()
    parts = [
        '/* Hybrid chat widget: <script src=".../widget.js" data-app="APP" data-key="KEY"> */',
        '(() => {\n"use strict";',
        f"const WIDGET_CSS = {json.dumps(css)};",
        asset("chat.js").decode(),
        asset("widget.js").decode(),
        "})();\n",
    ]
    return "\n".join(parts).encode()


def static_response(
    request: Request, body: bytes, media_type: str, headers: dict | None = None
) -> Response:
    """`body` with an ETag; a browser that has it already gets 304."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    common = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    common.update(headers or {})
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=common)
    return Response(body, media_type=media_type, headers=common)


KEY_HINTS = {
    True: "required: this gateway has API keys",
    False: "not needed: this gateway has no keys",
}
"""The key field's placeholder, from whether the serving gateway has keys."""


@functools.cache
def playground_page(keyed: bool) -> bytes:
    return asset("playground.html").replace(b"{{key_hint}}", KEY_HINTS[keyed].encode())


@playground_router.get("/playground")
async def playground(request: Request) -> Response:
    headers = {"Content-Security-Policy": PAGE_POLICY, "Referrer-Policy": "no-referrer"}
    page = playground_page(request.app.state.gateway.config.auth.enabled)
    return static_response(request, page, MEDIA_TYPES["html"], headers)


@playground_router.get("/playground/{name}")
async def playground_asset(name: str, request: Request) -> Response:
    if name not in PLAYGROUND_ASSETS:
        raise HTTPException(404, f"no playground file '{name}'")
    return static_response(request, asset(name), MEDIA_TYPES[name.rpartition(".")[2]])


@playground_router.get("/widget.js")
async def widget(request: Request) -> Response:
    # Sites load it cross-origin with a plain <script> tag: no CORS needed for the script.
    return static_response(request, widget_script(), MEDIA_TYPES["js"])
