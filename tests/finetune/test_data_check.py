"""`check_dataset`: every check fires on data built to trigger it, and stays quiet otherwise."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from finetune.data import CheckConfig, Example, Message, check_dataset
from tests.finetune.datasets import varied_chats

QUIET = CheckConfig(min_samples_error=0, min_samples_warning=0)
"""No sample-count findings, for tests about something else."""


@pytest.fixture
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def codes(report) -> dict[str, str]:
    return {f.code: f.severity for f in report.findings}


def finding(report, code):
    (found,) = [f for f in report.findings if f.code == code]
    return found


def chat(origin: str, *turns: str, system: str | None = None) -> Example:
    roles = ["user", "assistant"] * len(turns)
    messages = [Message("system", system)] if system else []
    messages += [Message(role, text) for role, text in zip(roles, turns, strict=False)]
    return Example(origin, tuple(messages))


def test_clean_data_passes_with_real_token_counts(tokenizer):
    examples = varied_chats(40)
    report = check_dataset(examples, tokenizer, max_length=256, config=QUIET)
    assert report.findings == [] and report.ok
    assert (report.examples, report.conversations, report.raw_texts) == (40, 40, 0)
    assert report.turns == {"system": 0, "user": 40, "assistant": 40, "assistant_trained": 40}
    rendered = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in examples[0].messages], tokenize=False
    )
    first = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    spread = report.conversation_lengths
    assert spread.unit == "tokens" and spread.count == 40
    assert spread.min <= first <= spread.max and spread.min <= spread.p50 <= spread.p95
    assert report.to_text().endswith("result: 0 errors, 0 warnings; ready to train")
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_sample_count_thresholds(tokenizer):
    few = check_dataset(varied_chats(12), tokenizer, 256)
    assert codes(few)["too-few-samples"] == "error" and not few.ok
    assert finding(few, "too-few-samples").message.startswith(
        "only 12 training samples (12 conversations + 0 raw-text windows); at least 30 are needed"
    )
    some = check_dataset(varied_chats(40), tokenizer, 256)
    assert codes(some) == {"few-samples": "warning"} and some.ok
    assert "below 200" in finding(some, "few-samples").message
    custom = CheckConfig(min_samples_error=5, min_samples_warning=10)
    assert check_dataset(varied_chats(12), tokenizer, 256, custom).findings == []


def test_check_config_is_validated_at_the_edge():
    with pytest.raises(ValidationError, match=r"min_samples_error \(50\) must not exceed"):
        CheckConfig(min_samples_error=50, min_samples_warning=10)
    with pytest.raises(ValidationError):
        CheckConfig(near_duplicate_jaccard=1.5)


def test_exact_duplicates_are_counted_and_named(tokenizer):
    examples = varied_chats(40)
    examples += [Example("copy.jsonl:1", examples[3].messages)] * 2
    report = check_dataset(examples, tokenizer, 256, QUIET)
    assert report.exact_duplicates == 2
    found = finding(report, "exact-duplicates")
    assert found.severity == "warning"
    assert found.message.startswith(
        "2 exact copies of other examples (copy.jsonl:1 = style.jsonl:4 (x3))"
    )


def test_near_duplicates_are_grouped(tokenizer):
    examples = varied_chats(40)
    base = examples[0].messages
    edited = base[1].content + " Indeed."  # one more word: one new 5-gram of 35
    examples.append(Example("edit.jsonl:1", (base[0], Message("assistant", edited))))
    report = check_dataset(examples, tokenizer, 256, QUIET)
    assert (report.near_duplicate_groups, report.near_duplicate_examples) == (1, 2)
    found = finding(report, "near-duplicates")
    assert (
        "2 examples form 1 group of near-duplicates (word 5-gram Jaccard >= 0.8)" in found.message
    )
    assert "style.jsonl:1 ~ edit.jsonl:1" in found.message and report.exact_duplicates == 0


def test_template_clustering_is_flagged_with_the_largest_cluster(tokenizer):
    templated = [
        chat(
            f"tpl.jsonl:{i + 1}",
            f"Tell me about item {i}",
            f"Thank you for your interest in item {i}. Our friendly team will get back to you "
            "within two business days with all the details you need.",
        )
        for i in range(30)
    ]
    report = check_dataset(varied_chats(20) + templated, tokenizer, 256, QUIET)
    assert report.near_copy_share == pytest.approx(0.6)
    found = finding(report, "template-clustering")
    assert found.message.startswith("60% of examples (30 of 50) train on a near-copy")
    assert "the largest cluster has 30 examples like tpl.jsonl:1" in found.message
    assert "diversity: share of examples whose trained text" in report.to_text()
    assert check_dataset(varied_chats(50), tokenizer, 256, QUIET).near_copy_share == 0


def test_truncation_names_the_longest_and_the_dropped(tokenizer):
    examples = [chat(f"short.jsonl:{i}", "Hi", "Hello") for i in range(5)]
    examples.append(chat("long.jsonl:1", "word " * 400, "short answer"))
    examples.append(chat("long.jsonl:2", "Question", "answer " * 100))
    report = check_dataset(examples, tokenizer, 64, QUIET)
    assert report.truncated == 2
    found = finding(report, "truncated")
    assert found.severity == "warning" and found.origins == ("long.jsonl:1", "long.jsonl:2")
    assert found.message.startswith(
        "2 conversations are longer than max length 64 and will be cut; 1 of them would keep "
        "no trained token and be dropped; longest (tokens): long.jsonl:1 ("
    )
    assert found.message.endswith("raise --max-length or shorten them")


def test_raw_texts_are_windowed_not_errors(tokenizer):
    letter = Example("letters/2019.txt", text="Dear fellow owners, " * 200)
    report = check_dataset([letter], tokenizer, 64, QUIET)
    ids = tokenizer(letter.text, add_special_tokens=False)["input_ids"]
    assert report.raw_lengths.max == len(ids)
    assert report.raw_windows == -(-(len(ids) + 1) // 64)  # + eos, ceil
    assert report.training_samples == report.raw_windows and report.findings == []
    assert f"cut into {report.raw_windows} windows" in report.to_text()


def test_blank_messages(tokenizer):
    examples = [
        chat("a.jsonl:1", "Question", "   "),
        chat("a.jsonl:2", " \n", "Answer"),
        Example("b.txt", text="\t"),
    ]
    report = check_dataset(examples, tokenizer, 256, QUIET)
    assert codes(report) == {
        "blank-reply": "error",
        "blank-text": "error",
        "blank-prompt": "warning",
    }
    assert finding(report, "blank-reply").message == (
        "1 assistant message is empty or whitespace only (a.jsonl:1 (assistant message 2)); "
        "write the reply or drop the example"
    )
    assert "a.jsonl:2 (user message 1)" in finding(report, "blank-prompt").message


def test_missing_chat_template_is_an_error_with_the_fix(tokenizer):
    tokenizer.chat_template = None
    report = check_dataset(varied_chats(3), tokenizer, 256, QUIET)
    found = finding(report, "no-chat-template")
    assert found.severity == "error" and not report.ok
    assert (
        found.message.startswith("the tokenizer ")
        and "has no chat template, so the 3" in found.message
    )
    assert "use the tokenizer of an instruct/chat model, or train on raw text" in found.message
    assert report.conversation_lengths.unit == "words (estimate)"
    # raw text needs no template
    raw_only = check_dataset([Example("a.txt", text="plain " * 50)], tokenizer, 256, QUIET)
    assert raw_only.findings == []


def test_template_raising_on_an_example_names_it(tokenizer):
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    examples = [*varied_chats(5), chat("sys.jsonl:7", "Hi", "Hello", system="Be brief.")]
    report = check_dataset(examples, tokenizer, 256, QUIET)
    found = finding(report, "chat-template-fails")
    assert found.severity == "error" and found.origins == ("sys.jsonl:7",)
    assert "cannot render 1 of 6 conversations (first, sys.jsonl:7: System role not supported)" in (
        found.message
    )
    assert report.conversation_lengths.count == 5


def test_without_a_tokenizer_lengths_are_estimated_and_said_so():
    report = check_dataset([*varied_chats(3), Example("a.txt", text="w " * 300)], None, 128, QUIET)
    found = finding(report, "no-tokenizer")
    assert found.severity == "warning" and "the chat template was not checked" in found.message
    assert report.conversation_lengths.unit == "words (estimate)"
    assert (report.raw_lengths.max, report.raw_windows) == (300, 3)
    assert report.tokenizer is None and "(no tokenizer)" in report.to_text()


def test_template_that_rewrites_earlier_turns_is_reported(tokenizer):
    # The last message renders differently, so a reply's text moves once a turn follows it:
    # training could not locate the assistant tokens.
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' }}"
        "{% if loop.last %}{{ m['content'] | upper }}{% else %}{{ m['content'] }}{% endif %}"
        "{{ '\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    report = check_dataset(
        [chat("multi.jsonl:3", "Hi", "Hello", "More?", "No")], tokenizer, 256, QUIET
    )
    found = finding(report, "chat-template-fails")
    assert found.origins == ("multi.jsonl:3",)
    assert (
        "(first, multi.jsonl:3: the chat template does not render conversations prefix-stably"
        in (found.message)
    )
