"""Apps from Python, no server needed::

from hybrid import App

app = App.from_yaml("examples/ceo-report-qa/app.yaml")
answer = app.chat("How much cash did Northwind hold at the end of 2025?")
print(answer.text)
for c in answer.citations:
    print(f"[{c['index']}] {c['file_name']} p.{c['page']}: {c['snippet'][:60]}")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hybrid.apps.budget import PromptBudget
from hybrid.apps.generators import Generator, LocalGenerator
from hybrid.apps.pipeline import AnswerNotes, AppPipeline
from hybrid.apps.spec import AppSpec, load_app_spec
from hybrid.config import HybridConfig, load_config
from hybrid.errors import ConfigError
from retrieval import KnowledgeBaseCatalog, KnowledgeBaseNotFound


@dataclass(frozen=True)
class AppAnswer:
    text: str
    notes: AnswerNotes

    @property
    def citations(self) -> list[dict]:
        return self.notes.citations

    @property
    def grounded(self) -> bool:
        return bool(self.notes.grounding["grounded"])


def open_pipeline(
    spec: AppSpec, catalog: KnowledgeBaseCatalog, budget: PromptBudget | None = None
) -> AppPipeline:
    """The app's pipeline over its knowledge base.

    Raises:
        ConfigError: the knowledge base does not exist (the message says how to make it).
    """
    try:
        kb = catalog.open(spec.knowledge_base)
    except KnowledgeBaseNotFound as exc:
        raise ConfigError(
            f"app '{spec.name}' uses knowledge base '{spec.knowledge_base}': {exc}; create it "
            f"with `hybrid kb create {spec.knowledge_base}` and `hybrid kb ingest`"
        ) from None
    return AppPipeline(spec, kb, budget)


class App:
    def __init__(self, spec: AppSpec, pipeline: AppPipeline, generator: Generator | None = None):
        self.spec = spec
        self.pipeline = pipeline
        self._generator = generator
        self._config: HybridConfig | None = None

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        *,
        config: HybridConfig | str | Path | None = None,
        generator: Generator | None = None,
    ) -> App:
        """Load an app spec; knowledge bases and adapters come from `config` (a HybridConfig,
        a hybrid.yaml path, or None for ./hybrid.yaml or the defaults).

        Raises:
            ConfigError: invalid spec or config, or a missing knowledge base.
        """
        settings = config if isinstance(config, HybridConfig) else load_config(_path(config))
        spec = load_app_spec(Path(path))
        app = cls(spec, open_pipeline(spec, KnowledgeBaseCatalog(settings.store)), generator)
        app._config = settings
        return app

    @property
    def generator(self) -> Generator:
        """By default the base model and the app's adapter in this process (loaded once)."""
        if self._generator is None:
            self._generator = LocalGenerator(*self._local_model())
        return self._generator

    def _local_model(self) -> tuple[Path, Path | None]:
        from hybrid.runtime import offline_registry

        registry = offline_registry(self._config or HybridConfig())
        if self.spec.adapter is None:
            return registry.base.path, None
        return registry.base.path, registry.resolve(self.spec.adapter).adapter.path

    def chat(self, message: str | Sequence[dict], **sampling) -> AppAnswer:
        """Answer a question (or a conversation, OpenAI message dicts) the way the gateway
        would: retrieval, the app's prompt, its adapter, then citations and grounding."""
        messages = (
            [{"role": "user", "content": message}] if isinstance(message, str) else list(message)
        )
        question = next(
            (m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), ""
        )
        passages = self.pipeline.passages(question, {"messages": messages, **sampling})
        if self.pipeline.answers_without_generation(passages):
            text = self.spec.no_context.message
        else:
            body = self.pipeline.engine_body({"messages": messages, **sampling}, passages)
            engine_messages = body.pop("messages")
            text = self.generator.generate(engine_messages, body)
        return AppAnswer(text, self.pipeline.notes(text, passages, question))


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None
