"""`/v1/embeddings`: the gateway serves embedders it is handed, through a small protocol, so
that `serving/` stays free of `retrieval/` (hybrid/ plugs in its knowledge bases' embedders,
as it plugs in apps through `ChatComposer`)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from serving.gateway.errors import InvalidRequest


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    prompt_tokens: int
    """Tokens of the inputs as the embedder's own tokenizer counts them."""
    model: str
    """The name reported back (the embedder's model name)."""


class EmbeddingProvider(Protocol):
    """Model ids served by an embedder: listed in /v1/models (`models`), and every id the
    provider answers to (`owns`, e.g. also an app's name, for keys scoped to that app)."""

    def models(self) -> Sequence: ...  # ModelInfo

    def owns(self, model: str) -> bool: ...

    def dimension(self, model: str) -> int: ...

    async def embed(self, model: str, texts: list[str]) -> Embedded: ...


def embedding_response(embedded: Embedded, encoding_format: str) -> dict:
    """OpenAI's CreateEmbeddingResponse; `base64` packs each vector as little-endian float32
    (what the openai SDK asks for by default, and decodes)."""

    def encode(vector: list[float]) -> list[float] | str:
        if encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return vector

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v)}
            for i, v in enumerate(embedded.vectors)
        ],
        "model": embedded.model,
        "usage": {"prompt_tokens": embedded.prompt_tokens, "total_tokens": embedded.prompt_tokens},
    }


def check_dimensions(requested: int | None, dimension: int, model: str) -> None:
    if requested is not None and requested != dimension:
        raise InvalidRequest(
            f"'{model}' makes {dimension}-dimensional embeddings and cannot shorten them; "
            f"drop `dimensions` or set it to {dimension}",
            param="dimensions",
        )
