"""One app's request flow, without I/O of its own beyond retrieval: question -> passages ->
engine request body -> (after generation) citations and grounding. The gateway composer and
the in-process `App.chat` both run it, so they answer the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hybrid.apps.answer_schema import AnswerSchema
from hybrid.apps.budget import PromptBudget
from hybrid.apps.figure_binding import binding_for
from hybrid.apps.followups import retrieval_query
from hybrid.apps.grounding import Grounding, check_grounding, citations
from hybrid.apps.prompt import Passage, build_messages, number_hits
from hybrid.apps.spec import AppSpec
from retrieval import KnowledgeBase, QueryOptions

# What a client may not override in an app request: the app decides these.
_APP_OWNED = ("model", "messages")


@dataclass(frozen=True)
class AnswerNotes:
    """What an app adds to each answer (the `hybrid` field of the response)."""

    app: str
    knowledge_base: str
    sources: list[dict]
    citations: list[dict]
    grounding: dict
    no_context: bool
    answer_schema: dict | None = None
    """With the app's `answer_schema`: {valid, errors} of a generated answer."""

    def to_dict(self) -> dict:
        fields = {
            "app": self.app,
            "knowledge_base": self.knowledge_base,
            "citations": self.citations,
            "sources": self.sources,
            "grounding": self.grounding,
            "no_context": self.no_context,
        }
        if self.answer_schema is not None:
            fields["answer_schema"] = self.answer_schema
        return fields


class AppPipeline:
    def __init__(
        self, spec: AppSpec, knowledge_base: KnowledgeBase, budget: PromptBudget | None = None
    ):
        self.spec = spec
        self.knowledge_base = knowledge_base
        self.budget = budget
        """Fits passages into the engine's context window; None: no fitting."""
        self.answer_schema = AnswerSchema(spec.answer_schema) if spec.answer_schema else None

    def query_options(self) -> QueryOptions:
        """The app's retrieval settings as the knowledge base takes them."""
        return QueryOptions(
            **self.spec.retrieval.model_dump(include=set(QueryOptions.model_fields))
        )

    def prepare(self) -> None:
        """Load the embedder and build the keyword index now rather than on the first question.

        Raises:
            StoreUnavailable: the vector store is down.
        """
        self.knowledge_base.prepare(self.query_options())

    def retrieve(self, question: str) -> list[Passage]:
        """The relevant passages for `question` (none below the app's min_similarity).

        Raises:
            InvalidQuery: empty question. StoreUnavailable: the vector store is down.
        """
        return number_hits(self.knowledge_base.query(question, self.query_options()))

    def fit(self, passages: Sequence[Passage], body: dict) -> list[Passage]:
        """Drop the lowest-ranked passages that would not fit the engine's context window."""
        if self.budget is None or not passages:
            return list(passages)
        max_tokens = (
            body.get("max_tokens")
            or body.get("max_completion_tokens")
            or self.spec.generation.max_tokens
            or 256
        )
        return self.budget.fit(self.spec, passages, body.get("messages") or [], int(max_tokens))

    def search_query(self, question: str, messages: Sequence[dict]) -> str:
        """What retrieval searches for: `question`, after the earlier user questions of
        `messages` when it is a follow-up ("And the year before?"; `retrieval.follow_ups`)."""
        r = self.spec.retrieval
        if r.follow_ups == "off":
            return question
        query = retrieval_query(messages, turns=r.history_turns)
        return query if query.endswith(question.strip()) else question

    def passages(self, question: str, body: dict) -> list[Passage]:
        """What the prompt shows for `question` (the last user message; earlier ones join the
        search when it follows up on them): the relevant passages that fit the context."""
        query = self.search_query(question, body.get("messages") or [])
        return self.fit(self.retrieve(query), body)

    def answers_without_generation(self, passages: Sequence[Passage]) -> bool:
        return not passages and self.spec.no_context.mode == "message"

    def engine_body(self, body: dict, passages: Sequence[Passage]) -> dict:
        """The request for the engine: the app's generation defaults under the client's own
        sampling values, and the app's prompt around the client's conversation."""
        client = {k: v for k, v in body.items() if k not in _APP_OWNED}
        if "max_completion_tokens" in client:
            client.setdefault("max_tokens", client.pop("max_completion_tokens"))
        engine = {
            **self.spec.generation.as_body(),
            **client,
            "messages": build_messages(self.spec, passages, body.get("messages") or []),
        }
        if self.spec.generation.enforce_answer_schema and passages and not _asks_own_shape(body):
            engine["structured_outputs"] = {"json": self.spec.answer_schema}
        if self.spec.generation.bind_figures and passages:
            # The app owns the constraint: a client's own `structured_outputs` is replaced.
            engine.pop("structured_outputs", None)
            asked = [_text(m) for m in body.get("messages") or [] if m.get("role") == "user"]
            binding = binding_for([p.text for p in passages] + asked, len(passages))
            if binding is not None:
                engine["structured_outputs"] = binding
        return engine

    def notes(self, answer: str, passages: Sequence[Passage], question: str) -> AnswerNotes:
        cited, _ = citations(answer, passages)
        schema = None
        if self.answers_without_generation(passages):
            grounding = Grounding(checked=0)  # the app's own no-context text: nothing to check
        else:
            grounding = check_grounding(
                answer, passages, question=question, persona=self.spec.persona
            )
            if self.answer_schema is not None:
                schema = self.answer_schema.check(answer).to_dict()
        return AnswerNotes(
            app=self.spec.name,
            knowledge_base=self.spec.knowledge_base,
            sources=[p.citation() for p in passages],
            citations=cited,
            grounding=grounding.to_dict(),
            no_context=not passages,
            answer_schema=schema,
        )


def _asks_own_shape(body: dict) -> bool:
    """Whether a client asks for an output shape of its own: any `response_format` (also
    `{"type": "text"}`, the way to ask for the model's free answer), vLLM's `structured_outputs`,
    or tools to call. Then an app does not impose its `answer_schema` at decode time; its check
    still reports on the answer."""
    return any(body.get(k) for k in ("response_format", "structured_outputs", "tools", "functions"))


def _text(message: dict) -> str:
    """A message's text (string content, or the text parts of a list of parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""
