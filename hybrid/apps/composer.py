"""Apps in the gateway: `AppComposer` is the gateway's `ChatComposer` for every app, so a
client picks an app with the OpenAI `model` field and gets the answer with its citations (in
the response's `hybrid` field; in a stream, in the last chunk before [DONE])."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from hybrid.apps.budget import ContextExceeded
from hybrid.apps.fields import public_sources, refused_fields
from hybrid.apps.pipeline import AppPipeline
from retrieval import InvalidQuery, RetrievalError, StoreUnavailable
from serving.gateway import ModelInfo, PreparedChat
from serving.gateway.errors import GatewayError, InvalidRequest
from serving.gateway.schemas import ChatCompletionRequest

log = logging.getLogger("hybrid.apps")


class KnowledgeBaseUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "knowledge_base_unavailable"


class AppMetrics:
    def __init__(self, registry: CollectorRegistry | None):
        self.answers = Counter(
            "hybrid_app_answers",
            "App answers, by app and whether retrieval found relevant passages.",
            ["app", "context"],
            registry=registry,
        )
        self.ungrounded = Counter(
            "hybrid_ungrounded_claims",
            "Numbers and names in app answers found in none of the retrieved passages.",
            ["app", "kind"],
            registry=registry,
        )
        self.ungrounded_answers = Counter(
            "hybrid_ungrounded_answers",
            "App answers with at least one ungrounded number, name or citation.",
            ["app"],
            registry=registry,
        )
        self.schema_checks = Counter(
            "hybrid_answer_schema_checks",
            "Generated answers of apps with an answer_schema, by app and whether they met it.",
            ["app", "result"],
            registry=registry,
        )


class AppComposer:
    def __init__(
        self,
        pipelines: Sequence[AppPipeline],
        base_name: str,
        registry: CollectorRegistry | None = None,
    ):
        self.pipelines = {p.spec.name: p for p in pipelines}
        self.base_name = base_name
        self.metrics = AppMetrics(registry)

    def models(self) -> list[ModelInfo]:
        infos = []
        for name, pipeline in sorted(self.pipelines.items()):
            spec = pipeline.spec
            infos.append(
                ModelInfo(
                    name,
                    parent=self.base_name,
                    root=spec.adapter or self.base_name,
                    kind="app",
                    extra={
                        "knowledge_base": spec.knowledge_base,
                        "adapter": spec.adapter,
                        "title": spec.title,
                        "description": spec.description,
                        "color": spec.branding.color,
                        "greeting": spec.branding.greeting,
                    },
                )
            )
        return infos

    def owns(self, model: str) -> bool:
        return model in self.pipelines

    async def prepare(self, request: ChatCompletionRequest, body: dict) -> PreparedChat:
        pipeline = self.pipelines[request.model]
        spec = pipeline.spec
        refused = refused_fields(body)
        if refused:
            raise InvalidRequest(
                f"app '{spec.name}' does not accept {', '.join(map(repr, refused))}: an app "
                "request may carry OpenAI's chat fields and sampling options, not fields that "
                "return or rebuild the app's prompt (docs/serving.md lists them)",
                param=refused[0],
            )
        question = request.question
        if not question.strip():
            raise InvalidRequest(
                f"app '{spec.name}' answers questions: the last user message is empty",
                param="messages",
            )
        try:
            passages = await asyncio.to_thread(pipeline.passages, question, body)
        except ContextExceeded as exc:
            param = "max_tokens" if "max_tokens" in body else "max_completion_tokens"
            raise InvalidRequest(str(exc), param=param, code="context_length_exceeded") from None
        except StoreUnavailable as exc:  # its text names the store's path or address: logged
            log.warning("app %s: knowledge base %s: %s", spec.name, spec.knowledge_base, exc)
            raise KnowledgeBaseUnavailable(
                f"the knowledge base '{spec.knowledge_base}' of app '{spec.name}' is unavailable "
                "(its store does not answer; the gateway log has details); retry in a few seconds",
                headers={"Retry-After": "5"},
            ) from None
        except InvalidQuery as exc:
            raise InvalidRequest(str(exc), param="messages") from None
        except RetrievalError as exc:
            log.warning("app %s: knowledge base %s: %s", spec.name, spec.knowledge_base, exc)
            raise KnowledgeBaseUnavailable(
                f"the knowledge base '{spec.knowledge_base}' of app '{spec.name}' failed; the "
                "gateway log has details"
            ) from None

        def annotate(texts: list[str]) -> dict:
            notes = [pipeline.notes(text, passages, question) for text in texts] or [
                pipeline.notes("", passages, question)
            ]
            self._count(spec.name, notes[0])
            for n in notes:
                if n.answer_schema is not None:
                    result = "valid" if n.answer_schema["valid"] else "invalid"
                    self.metrics.schema_checks.labels(spec.name, result).inc()
            fields = notes[0].to_dict()
            if len(notes) > 1:
                fields["choices"] = [
                    {"citations": n.citations, "grounding": n.grounding}
                    | ({"answer_schema": n.answer_schema} if n.answer_schema else {})
                    for n in notes
                ]
            for listed in _citation_lists(fields):
                public_sources(listed)  # names in the knowledge base, not server paths
            return fields

        target = spec.adapter or self.base_name
        if pipeline.answers_without_generation(passages):
            return PreparedChat(
                target, body, spec.name, annotate, fixed_answer=spec.no_context.message
            )
        return PreparedChat(target, pipeline.engine_body(body, passages), spec.name, annotate)

    def _count(self, app: str, notes) -> None:
        self.metrics.answers.labels(app, "none" if notes.no_context else "found").inc()
        for claim in notes.grounding["ungrounded"]:
            self.metrics.ungrounded.labels(app, claim["kind"]).inc()
        if not notes.grounding["grounded"]:
            self.metrics.ungrounded_answers.labels(app).inc()


def _citation_lists(fields: dict) -> list[list[dict]]:
    lists = [fields.get("sources") or [], fields.get("citations") or []]
    lists += [choice.get("citations") or [] for choice in fields.get("choices") or []]
    return lists
