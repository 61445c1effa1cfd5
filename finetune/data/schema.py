"""The one in-memory shape every dataset format is read into.

A training example is either a conversation (chat formats: Alpaca, ShareGPT, OpenAI chat) or a
plain text to continue (a raw style corpus). Loss is computed on assistant messages whose
`weight` is 1 (OpenAI fine-tuning files may set 0 to skip a message) and, for raw text, on all
tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    weight: int = 1
    """Only meaningful for assistant messages: 1 = train on it, 0 = context only."""


@dataclass(frozen=True)
class Example:
    """One training sample and where it came from (for error messages and reports)."""

    origin: str
    """`file:line` (JSONL), `file:#index` (JSON array) or `file` (raw text)."""
    messages: tuple[Message, ...] = ()
    text: str | None = None
    """Set for raw-corpus examples (trained as continuation); then `messages` is empty."""

    @property
    def is_chat(self) -> bool:
        return self.text is None
