"""Streamed answers: the engine's Server-Sent Events read with `httpx-sse`'s decoders,
rewritten event by event, written with FastAPI's SSE encoder (`format_sse_event`), and sent to
the client one write per read from the engine: the events a read completed go together (one
ASGI send each cost the gateway more than rewriting the event, bench/gateway_cost.py), and
none waits for a later read.

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
from httpx_sse import ServerSentEvent, SSEError

# httpx-sse's decoders, which `EventSource.aiter_sse` runs; pinned below 0.5 (pyproject.toml)
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

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


DONE = sse("[DONE]")


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


async def relay(
    upstream: Upstream, prepared: PreparedChat, wants_usage: bool
) -> AsyncIterator[bytes]:
    """A chat or completion stream: each event rewritten by `Rewrite`, and the events one
    read from the engine completed sent to the client together, in one write (an event is
    never held back to wait for more: only what was read already goes together)."""
    rewrite = Rewrite(upstream, prepared, wants_usage)
    status = 200
    finished = False
    pending: list[bytes] = []  # rewritten events of this read, not sent yet
    reads = _event_reads(upstream.response)
    try:
        async for events in reads:
            for event in events:
                pending.append(rewrite(event.data))
                if rewrite.finished:
                    break
            batch = b"".join(pending)
            pending.clear()
            if batch:
                yield batch
            if rewrite.finished:
                finished = True
                break
        if not finished:
            raise httpx.RemoteProtocolError("the engine closed the stream before [DONE]")
        status = rewrite.status
        if status == 200:
            await _read_rest(reads)
    except (httpx.TransportError, EngineUnavailable) as exc:
        status = 503
        yield b"".join(pending) + upstream.broke_off(exc)
    except (asyncio.CancelledError, GeneratorExit):
        if not finished:  # after [DONE] the client has its whole answer: not a disconnect
            status = 499  # the client went away; closing upstream aborts the generation
            upstream.metrics.client_disconnects.labels(upstream.requested).inc()
        raise
    except Exception as exc:
        answer = to_answer(exc)
        status = answer.status
        yield b"".join(pending) + sse(answer.body)
    finally:
        await upstream.close(status)


class Rewrite:
    """One chat or completion stream's events as the client gets them, one call per event's
    data: the model renamed to what the client asked for (an app's), nulls dropped
    (normalize.py), usage counted (and passed on only if asked for), an app's annotation added
    as the last chunk before [DONE], an engine's error event ending the stream. `finished` once
    [DONE] or an error was seen; `status` is then the request's."""

    def __init__(self, upstream: Upstream, prepared: PreparedChat, wants_usage: bool):
        self.upstream = upstream
        self.prepared = prepared
        self.wants_usage = wants_usage
        self.served = upstream.lease.target.engine_name
        self.texts: dict[int, list[str]] = {}
        self.first_token_seen = False
        self.last_chunk: dict | None = None
        self.finished = False
        self.status = 200
        # Once the first token is counted, a plain model's chunks that hold nothing to change
        # are sent on as they came, without parsing and writing them again.
        self.verbatim_ok = prepared.annotate is None and not prepared.response_model

    def __call__(self, data: str) -> bytes:
        """The bytes to send for an event with `data` (none for a usage chunk held back)."""
        if self.verbatim_ok and self.first_token_seen and _verbatim(data):
            return format_sse_event(data_str=data)
        prepared = self.prepared
        if data == "[DONE]":
            self.finished = True
            if prepared.annotate is None:
                return DONE
            return sse(_annotation_chunk(prepared, self.texts, self.last_chunk, self.served)) + DONE
        chunk = normalize_answer(json.loads(data))
        if "error" in chunk:  # vLLM reports a failure inside the stream
            self.status = 500
            self.finished = True
            return sse(chunk)
        self.last_chunk = chunk
        if prepared.response_model:
            chunk["model"] = prepared.response_model
        choices = chunk.get("choices") or []
        if chunk.get("usage") and not choices:
            self.upstream.metrics.observe_usage(
                self.upstream.requested, self.served, chunk["usage"]
            )
            if not self.wants_usage:
                return b""
        for choice in choices:
            piece = _delta_text(choice)
            if piece:
                self.texts.setdefault(int(choice.get("index", 0)), []).append(piece)
                if not self.first_token_seen:
                    self.first_token_seen = True
                    self._first_token()
        if not self.wants_usage:
            chunk.pop("usage", None)
        return sse(chunk)

    def _first_token(self) -> None:
        elapsed = time.perf_counter() - self.upstream.started
        self.upstream.metrics.first_token.labels(self.upstream.requested).observe(elapsed)


async def _event_reads(response: httpx.Response) -> AsyncIterator[list[ServerSentEvent]]:
    """The events of an engine's stream, grouped by the read that completed them: an event
    split over reads (a multi-byte character too) comes with the read that ends it, and a
    read that ends no event gives nothing. httpx-sse's decoders, as `EventSource.aiter_sse`
    runs them (which hands out one event at a time, hiding where a read ended)."""
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if "text/event-stream" not in content_type:
        raise SSEError(
            f"Expected response header Content-Type to contain 'text/event-stream', got "
            f"{content_type!r}"
        )
    lines, decoder = SSELineDecoder(), SSEDecoder()
    async for text in response.aiter_text():
        events = [e for line in lines.decode(text) if (e := decoder.decode(line)) is not None]
        if events:
            yield events
    events = [e for line in lines.flush() if (e := decoder.decode(line)) is not None]
    if events:
        yield events


DRAIN_TIMEOUT_S = 1.0
"""How long a stream's end (after [DONE]) is waited for before its connection is dropped."""


async def _read_rest(reads: AsyncIterator) -> None:
    """Read an engine stream to its end after [DONE] (nothing but the end of the body
    follows): the connection of a response that was not read to its end is closed, and a new
    connection for every streamed request costs the gateway more than the stream itself
    (bench/gateway_cost.py). Whatever goes wrong here, the client has its answer already."""
    with anyio.move_on_after(DRAIN_TIMEOUT_S), contextlib.suppress(httpx.HTTPError, SSEError):
        async for _ in reads:
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
