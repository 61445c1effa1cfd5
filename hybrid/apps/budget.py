"""Fit an app's prompt into the engine's context window.

Passages come ranked; when the rendered prompt plus the answer's `max_tokens` would exceed the
engine's `max_model_len`, the lowest-ranked passages are dropped until it fits (the response's
`sources` then list only the passages really shown). Tokens are counted with the base model's
own tokenizer and chat template, as the engine counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from hybrid.apps.prompt import Passage, build_messages
from hybrid.apps.spec import AppSpec


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
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        return len(ids)

    def fit(
        self,
        spec: AppSpec,
        passages: Sequence[Passage],
        conversation: Sequence[dict],
        max_tokens: int,
    ) -> list[Passage]:
        """The longest prefix of `passages` whose prompt leaves room for `max_tokens`."""
        kept = list(passages)
        while kept:
            prompt = self.count(build_messages(spec, kept, conversation))
            if prompt + max_tokens <= self.max_model_len:
                break
            kept.pop()
        return kept
