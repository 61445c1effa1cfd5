"""Loss only on assistant tokens, rendered with the base model's own chat template."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from finetune.data.schema import Example, Message
from finetune.encoding import IGNORE_INDEX, Collator, encode_chat, encode_examples, encode_raw
from finetune.errors import DatasetError


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def trained_text(tokenizer, encoded) -> str:
    return tokenizer.decode(
        [t for t, lab in zip(encoded.input_ids, encoded.labels, strict=True) if lab != IGNORE_INDEX]
    )


def test_only_weighted_assistant_turns_carry_loss(tokenizer):
    example = Example(
        "chat.jsonl:1",
        (
            Message("system", "Be brief."),
            Message("user", "Hi there"),
            Message("assistant", "Hello! How are you?"),
            Message("user", "Fine"),
            Message("assistant", "Skipped turn.", weight=0),
            Message("user", "Bye"),
            Message("assistant", "Goodbye."),
        ),
    )
    encoded = encode_chat(example, tokenizer, max_length=512)
    assert trained_text(tokenizer, encoded) == "Hello! How are you?<|im_end|>\nGoodbye.<|im_end|>\n"
    # the input is exactly what the server renders for the whole conversation
    rendered = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in example.messages], tokenize=False
    )
    assert tokenizer.decode(encoded.input_ids) == rendered


def test_truncation_is_flagged_and_empty_examples_dropped(tokenizer):
    long = Example("a:1", (Message("user", "word " * 300), Message("assistant", "answer")))
    encoded = encode_chat(long, tokenizer, max_length=64)
    assert encoded.truncated and len(encoded.input_ids) == 64 and encoded.trained_tokens == 0
    kept, dropped = encode_examples([long], tokenizer, max_length=64)
    assert kept == [] and dropped == ["a:1"]


def test_raw_text_becomes_trained_windows(tokenizer):
    windows = encode_raw(
        Example("letters/2019.txt", text="Dear fellow owners, " * 80), tokenizer, 50
    )
    assert len(windows) > 2
    assert all(w.labels == w.input_ids and len(w.input_ids) <= 50 for w in windows)
    assert windows[0].origin == "letters/2019.txt#w0"


def test_missing_chat_template_is_a_clear_error(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = None
    with pytest.raises(DatasetError, match="no chat template"):
        encode_examples(
            [Example("x:1", (Message("user", "q"), Message("assistant", "a")))], tokenizer, 64
        )


def test_collator_pads_labels_with_ignore(tokenizer):
    a = encode_chat(Example("a", (Message("user", "q"), Message("assistant", "a"))), tokenizer, 64)
    b = encode_chat(
        Example("b", (Message("user", "longer question here"), Message("assistant", "ok"))),
        tokenizer,
        64,
    )
    batch = Collator(tokenizer.pad_token_id)([a, b])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    short = 0 if len(a.input_ids) < len(b.input_ids) else 1
    assert (batch["labels"][short][batch["attention_mask"][short] == 0] == IGNORE_INDEX).all()
