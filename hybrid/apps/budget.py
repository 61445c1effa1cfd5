"""Fit an app's prompt into the engine's context window.

Passages come ranked; when the rendered prompt plus the answer's `max_tokens` would exceed the
engine's `max_model_len`, the lowest-ranked passages are dropped until it fits (the response's
`sources` then list only the passages really shown). Tokens are counted with the base model's
own tokenizer and chat template, as the engine counts them. When the prompt leaves no room for
the answer even without passages, the request is refused as the engine would refuse it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from hybrid.apps.prompt import Passage, build_messages, content_text
from hybrid.apps.spec import AppSpec


class ContextExceeded(ValueError):
    """The prompt without any passage plus the requested answer exceed the context window."""


def countable(message: dict) -> dict:
    """`message` as a chat template can render it for counting: OpenAI content parts become
    their text joined, a `null` content (an assistant turn with `tool_calls`) the calls' JSON.
    Images and other non-text parts are not counted."""
    content = content_text(message.get("content"))
    if message.get("content") is None and message.get("tool_calls"):
        content = json.dumps(message["tool_calls"], ensure_ascii=False)
    return {"role": message.get("role", "user"), "content": content}


class PromptBudget:
    def __init__(self, tokenizer_dir: Path, max_model_len: int):
        self.tokenizer_dir = tokenizer_dir
        self.max_model_len = max_model_len

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.tokenizer_dir)

    def count(self, messages: list[dict]) -> int:
        ids = self.tokenizer.apply_chat_template(
            [countable(m) for m in messages],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        return len(ids)

    def fit(
        self,
        spec: AppSpec,
        passages: Sequence[Passage],
        conversation: Sequence[dict],
        max_tokens: int,
    ) -> list[Passage]:
        """The longest prefix of `passages` whose prompt leaves room for `max_tokens`.

        Raises:
            ContextExceeded: not even the prompt without passages leaves that room (the engine
                would refuse the request; dropping every passage would answer "not in the
                sources" instead).
        """
        kept = list(passages)
        while True:
            prompt = self.count(build_messages(spec, kept, conversation))
            if prompt + max_tokens <= self.max_model_len:
                return kept
            if not kept:
                raise ContextExceeded(
                    f"This model's maximum context length is {self.max_model_len} tokens. "
                    f"However, you requested {max_tokens} output tokens and the messages take "
                    f"{prompt} tokens without any passage ({prompt + max_tokens} in all). "
                    "Please request fewer output tokens or shorten the messages."
                )
            kept.pop()
