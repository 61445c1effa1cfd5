"""Streamed answers: the engine's Server-Sent Events read with `httpx-sse`, relayed to the
client chunk by chunk, and written with FastAPI's SSE encoder (`format_sse_event`).

The engine is always asked for usage (so token metrics exist); the usage chunk reaches the
client only if it asked for it. Closing a stream early closes the engine connection, which
makes vLLM abort the generation.

Why not FastAPI's generator routes (`response_class=EventSourceResponse`): an OpenAI route
answers JSON or an event stream depending on the body's `stream`, which a route whose
response class is fixed cannot do, and their keep-alive pings and JSON encoding would change
the bytes clients get. So the routes return `EventStreamResponse` (an `EventSourceResponse`)
over the events written here. Every event's data is JSON with non-ASCII characters escaped,
so `format_sse_event`, which splits data on Unicode line breaks too in FastAPI 0.136, never
finds one to split on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import httpx
from fastapi.sse import format_sse_event
from httpx_sse import EventSource, SSEError

from serving.adapters.manager import Lease
from serving.engine.replicas import EngineSet
from serving.errors import EngineUnavailable
from serving.gateway.admission import Ticket
from serving.gateway.composing import PreparedChat
from serving.gateway.errors import to_answer
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.normalize import (
    ABSENT_NOT_NULL_MESSAGE,
    ABSENT_NOT_NULL_TOP,
    normalize_answer,
)

log = logging.getLogger("serving.gateway")


@dataclass
class EventStream:
    """An SSE body for the route to send; `aclose()` ends it early (client went away)."""

    iterator: AsyncIterator[bytes]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iterator

    async def aclose(self) -> None:
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def sse(payload: dict | str) -> bytes:
    """One event whose data is `payload` (a dict: compact JSON, ASCII only)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return format_sse_event(data_str=data)


@dataclass
class Upstream:
    """One engine stream on its way to a client, and what to free when it ends."""

    response: httpx.Response
    lease: Lease
    ticket: Ticket
    engines: EngineSet
    metrics: GatewayMetrics
    route: str
    requested: str
    started: float

    def broke_off(self, exc: Exception) -> bytes:
        """The engine stopped answering mid-stream: route around it; the client's last event."""
        url = self.lease.replica.url
        self.engines.mark_unhealthy(url)
        log.warning("stream from %s broke off: %s", url, exc)
        return sse(to_answer(EngineUnavailable(str(exc), url=url)).body)

    async def close(self, status: int) -> None:
        # On a client disconnect this runs inside a cancelled scope, where every await is
        # cancelled at once: shield the close, or the engine connection stays open and
        # vLLM generates the whole answer for nobody.
        with anyio.CancelScope(shield=True):
            await self.response.aclose()
        self.lease.release()
        self.ticket.leave()
        self.metrics.answered(self.route, self.requested, status, self.started)


async def pass_through(upstream: Upstream) -> AsyncIterator[bytes]:
    """An engine's event stream relayed byte for byte (Responses API events)."""
    status = 200
    try:
        async for chunk in upstream.response.aiter_raw():
            yield chunk
    except (httpx.TransportError, EngineUnavailable) as exc:
        status = 503
        yield upstream.broke_off(exc)
    except (asyncio.CancelledError, GeneratorExit):
        status = 499
        upstream.metrics.client_disconnects.labels(upstream.requested).inc()
        raise
    finally:
        await upstream.close(status)


async def relay(  # noqa: C901 - one pass over the stream: rename, usage, annotation, errors
    upstream: Upstream, prepared: PreparedChat, wants_usage: bool
) -> AsyncIterator[bytes]:
    """A chat or completion stream, chunk by chunk: the model renamed to what the client
    asked for, usage counted (and passed on only if asked for), an app's annotation added as
    the last chunk before [DONE]."""
    metrics, requested = upstream.metrics, upstream.requested
    served = upstream.lease.target.engine_name
    texts: dict[int, list[str]] = {}
    first_token_seen = False
    status = 200
    finished = False
    last_chunk: dict | None = None
    # Once the first token is counted, a plain model's chunks that hold nothing to change are
    # sent on as they came, without parsing and writing them again.
    verbatim_ok = prepared.annotate is None and not prepared.response_model
    try:
        events = EventSource(upstream.response).aiter_sse()
        async for event in events:
            if verbatim_ok and first_token_seen and _verbatim(event.data):
                yield format_sse_event(data_str=event.data)
                continue
            if event.data == "[DONE]":
                if prepared.annotate is not None:
                    yield sse(_annotation_chunk(prepared, texts, last_chunk, served))
                yield sse("[DONE]")
                finished = True
                break
            chunk = normalize_answer(json.loads(event.data))
            if "error" in chunk:  # vLLM reports a failure inside the stream
                status = 500
                yield sse(chunk)
                finished = True
                break
            last_chunk = chunk
            if prepared.response_model:
                chunk["model"] = prepared.response_model
            choices = chunk.get("choices") or []
            if chunk.get("usage") and not choices:
                metrics.observe_usage(requested, served, chunk["usage"])
                if not wants_usage:
                    continue
            for choice in choices:
                piece = _delta_text(choice)
                if piece:
                    texts.setdefault(int(choice.get("index", 0)), []).append(piece)
                    if not first_token_seen:
                        first_token_seen = True
                        elapsed = time.perf_counter() - upstream.started
                        metrics.first_token.labels(requested).observe(elapsed)
            if not wants_usage:
                chunk.pop("usage", None)
            yield sse(chunk)
        if not finished:
            raise httpx.RemoteProtocolError("the engine closed the stream before [DONE]")
        if status == 200:
            await _read_rest(events)
    except (httpx.TransportError, EngineUnavailable) as exc:
        status = 503
        yield upstream.broke_off(exc)
    except (asyncio.CancelledError, GeneratorExit):
        if not finished:  # after [DONE] the client has its whole answer: not a disconnect
            status = 499  # the client went away; closing upstream aborts the generation
            metrics.client_disconnects.labels(requested).inc()
        raise
    except Exception as exc:
        answer = to_answer(exc)
        status = answer.status
        yield sse(answer.body)
    finally:
        await upstream.close(status)


DRAIN_TIMEOUT_S = 1.0
"""How long a stream's end (after [DONE]) is waited for before its connection is dropped."""


async def _read_rest(events: AsyncIterator) -> None:
    """Read an engine stream to its end after [DONE] (nothing but the end of the body
    follows): the connection of a response that was not read to its end is closed, and a new
    connection for every streamed request costs the gateway more than the stream itself
    (bench/gateway_cost.py). Whatever goes wrong here, the client has its answer already."""
    with anyio.move_on_after(DRAIN_TIMEOUT_S), contextlib.suppress(httpx.HTTPError, SSEError):
        async for _ in events:
            pass


_REWRITTEN_KEYS = tuple(
    f'"{key}"' for key in ("usage", "error", *ABSENT_NOT_NULL_TOP, *ABSENT_NOT_NULL_MESSAGE)
)
"""Keys whose chunks `relay` parses: usage is counted (and maybe held back; its fields that
are dropped when null are inside it), errors end the stream, the others are dropped when null
(normalize.py)."""


def _verbatim(data: str) -> bool:
    """Whether a chunk can be relayed as the engine sent it: ASCII only (the gateway's events
    never carry a raw Unicode line break, see above), not [DONE], no key that is rewritten.
    A key in JSON text is always quoted, so a chunk that holds one is never passed."""
    return (
        data.isascii() and data.startswith("{") and not any(key in data for key in _REWRITTEN_KEYS)
    )


def _annotation_chunk(
    prepared: PreparedChat, texts: dict[int, list[str]], last_chunk: dict | None, served: str
) -> dict:
    assert prepared.annotate is not None
    ordered = ["".join(texts.get(i, [])) for i in range(max(texts, default=-1) + 1)]
    fields = prepared.annotate(ordered)
    base = last_chunk or {}
    return {
        "id": base.get("id", ""),
        "object": base.get("object", "chat.completion.chunk"),
        "created": base.get("created", int(time.time())),
        "model": prepared.response_model or base.get("model", ""),
        "choices": [],
        prepared.extra_key: {"served_by": served, **fields},
    }


def _delta_text(choice: dict) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return delta.get("content") or ""
    return choice.get("text") or ""
