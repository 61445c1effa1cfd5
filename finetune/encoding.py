"""Examples -> token ids and labels, rendered with the base model's own chat template.

The full conversation is rendered to one string exactly as the server renders a prompt, then
tokenized once; character ranges of the assistant turns (found by rendering each prefix) decide
which tokens carry loss. Prompts, system messages, user turns and assistant turns with weight 0
are masked with -100. Raw style texts are trained as plain continuation in windows.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.data.schema import Example
from finetune.errors import DatasetError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    origin: str
    truncated: bool = False

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def assistant_char_ranges(example: Example, tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """Render the conversation; return the text and the spans of trainable assistant turns."""
    messages = [{"role": m.role, "content": m.content} for m in example.messages]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    ranges = []
    for i, message in enumerate(example.messages):
        if message.role != "assistant" or not message.weight:
            continue
        prompt = tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True
        )
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (
            full.startswith(prompt) and full.startswith(through) and through.startswith(prompt)
        ):
            raise DatasetError(
                f"{example.origin}: the chat template does not render conversations "
                "prefix-stably (a later turn changes earlier text), so assistant turns cannot be "
                "located; use a base model whose template appends turns, or train on raw text"
            )
        ranges.append((len(prompt), len(through)))
    return full, ranges


def encode_chat(example: Example, tokenizer, max_length: int) -> EncodedExample:
    text, ranges = assistant_char_ranges(example, tokenizer)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = []
    for token_id, (start, end) in zip(ids, offsets, strict=True):
        inside = any(lo <= start and end <= hi and end > start for lo, hi in ranges)
        labels.append(token_id if inside else IGNORE_INDEX)
    truncated = len(ids) > max_length
    return EncodedExample(ids[:max_length], labels[:max_length], example.origin, truncated)


def encode_raw(example: Example, tokenizer, max_length: int) -> list[EncodedExample]:
    """A raw text becomes windows of `max_length` tokens, all of them trained."""
    ids = tokenizer(example.text or "", add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = [*ids, tokenizer.eos_token_id]
    windows = []
    for n, start in enumerate(range(0, len(ids), max_length)):
        window = ids[start : start + max_length]
        if len(window) < 8:  # a stub at the end teaches nothing
            continue
        windows.append(EncodedExample(window, list(window), f"{example.origin}#w{n}"))
    return windows


def encode_examples(
    examples: list[Example], tokenizer, max_length: int
) -> tuple[list[EncodedExample], list[str]]:
    """Encode all examples. Returns (encoded, origins dropped because nothing was left to train)."""
    if getattr(tokenizer, "chat_template", None) is None and any(e.is_chat for e in examples):
        raise DatasetError(
            "the base model's tokenizer has no chat template, so chat examples cannot be rendered "
            "as they will be served; use an instruct/chat base model or train on raw text"
        )
    encoded, dropped = [], []
    for example in examples:
        if example.is_chat:
            item = encode_chat(example, tokenizer, max_length)
            if item.trained_tokens == 0:
                dropped.append(example.origin)
            else:
                encoded.append(item)
        else:
            encoded.extend(encode_raw(example, tokenizer, max_length))
    return encoded, dropped


class Collator:
    """Pad a batch to its longest example (labels padded with -100)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[EncodedExample]) -> dict:
        import torch

        longest = max(len(item.input_ids) for item in batch)
        ids, labels, mask = [], [], []
        for item in batch:
            pad = longest - len(item.input_ids)
            ids.append(item.input_ids + [self.pad_token_id] * pad)
            labels.append(item.labels + [IGNORE_INDEX] * pad)
            mask.append([1] * len(item.input_ids) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }
