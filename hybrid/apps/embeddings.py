"""The apps' knowledge-base embedders on the gateway's `/v1/embeddings`, so a LlamaIndex or
LangChain user embeds with the very model a knowledge base was built with. An embedder answers
to its model name (`all-MiniLM-L6-v2`, listed in /v1/models) and to the name of each app that
uses it (so a key scoped to an app can embed with its model)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hybrid.apps.pipeline import AppPipeline
from retrieval.embedders import Embedder
from serving.gateway import ModelInfo
from serving.gateway.embeddings import Embedded


def model_name(embedder: Embedder) -> str:
    """'sentence-transformers:all-MiniLM-L6-v2' -> 'all-MiniLM-L6-v2'."""
    return embedder.identity.split(":", 1)[-1]


class KnowledgeBaseEmbeddings:
    """`serving.gateway.embeddings.EmbeddingProvider` over the apps' knowledge bases."""

    def __init__(self, pipelines: Sequence[AppPipeline]):
        self._by_id: dict[str, Embedder] = {}
        self._names: dict[str, list[str]] = {}
        for pipeline in pipelines:
            embedder = pipeline.knowledge_base.embedder
            name = model_name(embedder)
            self._by_id.setdefault(name, embedder)
            self._by_id.setdefault(pipeline.spec.name, embedder)
            self._names.setdefault(name, []).append(pipeline.spec.knowledge_base)

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name,
                root=self._by_id[name].identity,
                kind="embedder",
                extra={
                    "dimension": self._by_id[name].dimension,
                    "knowledge_bases": sorted(set(kbs)),
                },
            )
            for name, kbs in sorted(self._names.items())
        ]

    def owns(self, model: str) -> bool:
        return model in self._by_id

    def dimension(self, model: str) -> int:
        return self._by_id[model].dimension

    async def embed(self, model: str, texts: list[str]) -> Embedded:
        embedder = self._by_id[model]

        def run() -> Embedded:
            vectors = embedder.model.get_text_embedding_batch(texts)
            tokens = sum(embedder.count_tokens(text) for text in texts)
            return Embedded([list(map(float, v)) for v in vectors], tokens, model_name(embedder))

        return await asyncio.to_thread(run)
