"""The contract between the gateway and models served by composition (apps, in `hybrid/`):
the gateway lists them and hands them a chat request to prepare; it knows nothing else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from serving.gateway.models import ModelInfo
from serving.gateway.schemas import ChatCompletionRequest

Annotate = Callable[[list[str]], dict]
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


class ChatComposer(Protocol):
    """Model ids served by composition (apps, in `hybrid/`): listed in /v1/models and prepared
    before the engine sees the request. The gateway knows nothing else about them."""

    def models(self) -> Sequence[ModelInfo]: ...

    def owns(self, model: str) -> bool: ...

    async def prepare(self, request: ChatCompletionRequest, body: dict) -> PreparedChat: ...
