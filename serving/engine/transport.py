"""The engine client's wire: httpx's transport interface over aiohttp's connection pool.

`EngineClient` builds `httpx.Request`s and reads `httpx.Response`s (tests hand it httpx's
`MockTransport` or `ASGITransport` instead of this), but the bytes travel through aiohttp:
measured against an instant engine (bench/gateway_cost.py), httpcore's pool with h11 cost the
gateway 0.9 ms of CPU and 1.9 ms of latency per request, and each additional connection made
every request dearer; aiohttp (C HTTP parser, a dict of idle connections) costs a fraction of
it. Why not the `httpx-aiohttp` package: its session is bound to the event loop of its first
request (a `run_sync` or a test's second event loop would reuse dead connections), and it maps
every connection error to `ConnectTimeout`, which would misname an engine that hung up.

Errors are raised as httpx's, so callers keep catching `httpx.TransportError`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import httpx

MAX_CONNECTIONS = 1024
"""Open connections per engine at most: above any sensible `max_pending_requests` (the
gateway's admission bounds the requests in flight; a lower limit here would only queue them)."""
KEEPALIVE_S = 2.0
"""Idle connections are dropped after 2 s, before vLLM's server closes them (uvicorn's
keep-alive: 5 s), so a request never goes out on a connection the engine is closing (at the
boundary such a request failed as "engine unavailable")."""


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends requests with aiohttp, one pool per event loop (the
    gateway has one; `run_sync` and tests may start others, whose connections cannot be
    shared)."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS, keepalive_s: float = KEEPALIVE_S):
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive_s, ssl=_tls()
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,  # httpx decodes what the engine encoded, if anything
                skip_auto_headers=("Accept-Encoding",),  # so the engine encodes nothing
                # HTTP(S)_PROXY / NO_PROXY apply as they did with httpx; aiohttp reads them
                # again on every request, so only when one is set
                trust_env=bool(urllib.request.getproxies()),
            )
            self._loop = loop
        return self._session

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        """httpx's timeouts as aiohttp's: connect -> sock_connect, read -> sock_read (between
        bytes, as in httpx), pool -> connect (a free connection and the connection, together)."""
        given = request.extensions.get("timeout", {})
        key = (given.get("connect"), given.get("read"), given.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=key[0], sock_read=key[1], connect=key[2]
            )
            self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_here()
        body = await request.aread()
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(request),
            )
        except Exception as exc:
            mapped = _as_httpx(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        if self._loop is asyncio.get_running_loop():
            await session.close()
        # else: its event loop has ended, and its connections with it


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body, chunks as they arrive; closing it before its end closes the
    connection (so vLLM aborts the generation), after its end returns it to the pool."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request):
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            mapped = _as_httpx(exc, self._request)
            if mapped is exc:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        self._response.release()


@functools.cache
def _tls() -> ssl.SSLContext:
    """The certificates httpx trusts (certifi's, or SSL_CERT_FILE / SSL_CERT_DIR), for engines
    behind https: the same as before aiohttp carried the requests."""
    return httpx.create_ssl_context()


def _as_httpx(exc: Exception, request: httpx.Request) -> Exception:
    """aiohttp's (and asyncio's) transport errors as httpx's; anything else unchanged."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, (aiohttp.ServerTimeoutError, TimeoutError)):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.ReadError(message, request=request)
    return exc
