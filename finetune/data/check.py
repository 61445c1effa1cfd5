"""`check_dataset`: the report a person reads before spending compute on training.

Counts, token lengths as training will see them (the base model's chat template, via
`finetune.encoding`), truncation, duplicates, near-duplicates, answer diversity, too few
samples, blank replies and chat-template failures. Each problem is a `Finding` of severity
`error` (training should not start) or `warning` (it may, but read this first).

Why one module: every finding comes from one measured pass over the examples (`_measure`) into one
report; each check is a small function below `check_dataset`, and much of the length is the
findings' messages.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from finetune.config import Frozen
from finetune.data.schema import Example
from finetune.data.similarity import groups, similar_pairs

Severity = Literal["error", "warning"]


class CheckConfig(Frozen):
    """Thresholds of `check_dataset`."""

    min_samples_error: Annotated[int, Field(ge=0)] = 30
    """Fewer training samples than this is an error: an adapter learns nothing reliable."""
    min_samples_warning: Annotated[int, Field(ge=0)] = 200
    """Fewer than this is a warning: a few hundred examples are the usual floor for a voice."""
    near_duplicate_jaccard: Annotated[float, Field(gt=0, le=1)] = 0.8
    """Two examples whose word n-gram Jaccard similarity reaches this are near-duplicates."""
    near_copy_jaccard: Annotated[float, Field(gt=0, le=1)] = 0.6
    """A trained text (reply, raw text) this similar to another one is a near-copy of it."""
    near_copy_share_warning: Annotated[float, Field(ge=0, le=1)] = 0.3
    """Warn when more than this share of examples have a near-copy (template clustering)."""
    shingle_words: Annotated[int, Field(ge=1, le=20)] = 5
    """n of the word n-grams compared for similarity."""
    listed_origins: Annotated[int, Field(ge=1, le=100)] = 5
    """How many examples a finding names."""

    @model_validator(mode="after")
    def _error_below_warning(self) -> CheckConfig:
        if self.min_samples_error > self.min_samples_warning:
            raise ValueError(
                f"min_samples_error ({self.min_samples_error}) must not exceed "
                f"min_samples_warning ({self.min_samples_warning}); lower the first"
            )
        return self


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    """Stable name of the check, e.g. `near-duplicates`."""
    message: str
    """What is wrong, how much, and what to do about it."""
    origins: tuple[str, ...] = ()
    """The first few examples concerned (`file:line`), for the reader to open."""


@dataclass(frozen=True)
class LengthSpread:
    unit: str
    """`tokens`, or `words (estimate)` without a usable tokenizer."""
    count: int
    min: int
    p50: int
    p95: int
    max: int

    @classmethod
    def of(cls, values: Sequence[int], unit: str) -> LengthSpread | None:
        if not values:
            return None
        v = np.asarray(values)
        p50, p95 = (int(np.percentile(v, q, method="nearest")) for q in (50, 95))
        return cls(unit, len(v), int(v.min()), p50, p95, int(v.max()))

    def line(self) -> str:
        return f"min {self.min}, p50 {self.p50}, p95 {self.p95}, max {self.max} {self.unit}"


@dataclass
class DataReport:
    examples: int
    conversations: int
    raw_texts: int
    training_samples: int
    """Conversations plus the windows raw texts are cut into: what one epoch trains on."""
    turns: dict[str, int]
    """Messages by role; `assistant_trained` counts replies with weight 1."""
    max_length: int
    tokenizer: str | None
    conversation_lengths: LengthSpread | None
    raw_lengths: LengthSpread | None
    raw_windows: int
    truncated: int
    exact_duplicates: int
    """Examples that repeat an earlier one exactly."""
    near_duplicate_groups: int
    near_duplicate_examples: int
    near_copy_share: float
    """Share of examples whose trained text has a near-copy elsewhere (diversity measure)."""
    measures: dict[str, str]
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when nothing stops training (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}

    def to_text(self) -> str:
        lines = [
            f"{_n(self.examples, 'example')} ({_n(self.conversations, 'conversation')}, "
            f"{_n(self.raw_texts, 'raw text')}) -> {_n(self.training_samples, 'training sample')}",
        ]
        if self.conversations:
            t = self.turns
            lines.append(
                f"  turns       {t['system']} system, {t['user']} user, {t['assistant']} "
                f"assistant ({t['assistant_trained']} trained)"
            )
        source = f"tokenizer {self.tokenizer}" if self.tokenizer else "no tokenizer"
        lines.append(f"  lengths     max length {self.max_length} ({source})")
        if self.conversation_lengths:
            lines.append(
                f"    conversations  {self.conversation_lengths.line()}; "
                f"{self.truncated} over max length"
            )
        if self.raw_lengths:
            lines.append(
                f"    raw texts      {self.raw_lengths.line()}; cut into {self.raw_windows} windows"
            )
        lines += [
            f"  duplicates  {_copies(self.exact_duplicates)}; {self.near_duplicate_examples} "
            f"examples in {_n(self.near_duplicate_groups, 'near-duplicate group')}",
            f"  diversity   {self.near_copy_share:.0%} of examples have a near-copy",
            "",
        ]
        for finding in self.errors + self.warnings:
            lines.append(f"{finding.severity:<8}{finding.code}: {finding.message}")
        if self.findings:
            lines.append("")
        for name, text in self.measures.items():
            lines.append(f"{name}: {text}")
        verdict = (
            "fix the errors before training"
            if self.errors
            else "ready to train, read the warnings first"
            if self.warnings
            else "ready to train"
        )
        lines.append(
            f"result: {_n(len(self.errors), 'error')}, {_n(len(self.warnings), 'warning')}; "
            f"{verdict}"
        )
        return "\n".join(lines)


def check_dataset(
    examples: Sequence[Example],
    tokenizer: Any | None,
    max_length: int,
    config: CheckConfig = CheckConfig(),
) -> DataReport:
    """Measure and check training examples; never raises on bad data, reports it.

    Args:
        examples: as read by `load_dataset` (or built in code).
        tokenizer: the base model's Hugging Face tokenizer, or None to estimate lengths by
            whitespace words (then the chat template is not checked, with a warning saying so).
        max_length: tokens per training sample, as in the training config.
        config: thresholds.
    """
    listed = config.listed_origins
    findings: list[Finding] = []
    chats = [e for e in examples if e.is_chat]
    raws = [e for e in examples if not e.is_chat]
    findings += _blank_texts(examples, listed)

    lengths = _measure(chats, raws, tokenizer, max_length, listed)
    findings += lengths.findings
    training_samples = len(chats) + lengths.raw_windows
    findings += _too_few(training_samples, len(chats), lengths.raw_windows, config)

    dupes, extra, firsts = _exact_duplicates(examples, listed)
    findings += dupes
    near, near_groups, near_examples = _near_duplicates(firsts, config)
    findings += near
    diversity, share = _diversity(examples, config)
    findings += diversity

    turns = {"system": 0, "user": 0, "assistant": 0, "assistant_trained": 0}
    for example in chats:
        for message in example.messages:
            turns[message.role] += 1
            turns["assistant_trained"] += message.role == "assistant" and message.weight == 1
    n = config.shingle_words
    return DataReport(
        examples=len(examples),
        conversations=len(chats),
        raw_texts=len(raws),
        training_samples=training_samples,
        turns=turns,
        max_length=max_length,
        tokenizer=_tokenizer_name(tokenizer),
        conversation_lengths=LengthSpread.of(lengths.chat, lengths.chat_unit),
        raw_lengths=LengthSpread.of(lengths.raw, lengths.raw_unit),
        raw_windows=lengths.raw_windows,
        truncated=lengths.truncated,
        exact_duplicates=extra,
        near_duplicate_groups=near_groups,
        near_duplicate_examples=near_examples,
        near_copy_share=share,
        measures={
            "near-duplicates": (
                f"word {n}-gram Jaccard >= {config.near_duplicate_jaccard} between whole "
                "examples, system prompts left out (MinHash estimate, +-0.04)"
            ),
            "diversity": (
                f"share of examples whose trained text (replies, raw text) has a neighbour at "
                f"word {n}-gram Jaccard >= {config.near_copy_jaccard}; warned above "
                f"{config.near_copy_share_warning:.0%}"
            ),
        },
        findings=sorted(findings, key=lambda f: f.severity != "error"),
    )


# --- lengths, truncation and the chat template ----------------------------------------------


@dataclass
class _Lengths:
    chat: list[int] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    chat_unit: str = "tokens"
    raw_unit: str = "tokens"
    raw_windows: int = 0
    truncated: int = 0
    findings: list[Finding] = field(default_factory=list)


def _measure(
    chats: list[Example], raws: list[Example], tokenizer: Any, max_length: int, listed: int
) -> _Lengths:
    out = _Lengths()
    has_template = tokenizer is not None and getattr(tokenizer, "chat_template", None)
    if tokenizer is None:
        out.chat_unit = out.raw_unit = _WORDS
        checked = "; the chat template was not checked" if chats else ""
        out.findings.append(
            Finding(
                "warning",
                "no-tokenizer",
                f"no tokenizer given: lengths are whitespace-word estimates (token counts run "
                f"higher){checked}; pass --tokenizer BASE_MODEL_DIR for real counts",
            )
        )
    elif chats and not has_template:
        out.chat_unit = _WORDS
        out.findings.append(
            Finding(
                "error",
                "no-chat-template",
                f"the tokenizer {_tokenizer_name(tokenizer)} has no chat template, so the "
                f"{_n(len(chats), 'conversation')} cannot be rendered as they will be served; use the "
                "tokenizer of an instruct/chat model, or train on raw text instead",
            )
        )

    over: list[tuple[int, str]] = []
    nothing_left: list[str] = []
    failed: list[tuple[str, str]] = []
    for example in chats:
        if not has_template:
            tokens = sum(len(m.content.split()) for m in example.messages)
        else:
            try:
                tokens, trained_within = _render_chat(example, tokenizer, max_length)
            except Exception as exc:  # a template's own error type is not ours to know: report
                reason = str(exc).removeprefix(f"{example.origin}: ")
                failed.append((example.origin, reason or type(exc).__name__))
                continue
            if trained_within == 0:
                nothing_left.append(example.origin)
        out.chat.append(tokens)
        if tokens > max_length:
            over.append((tokens, example.origin))

    for example in raws:
        if tokenizer is None:
            words = len((example.text or "").split())
            out.raw.append(words)
            out.raw_windows += math.ceil(words / max_length)
        else:
            out.raw.append(
                len(tokenizer(example.text or "", add_special_tokens=False)["input_ids"])
            )
            out.raw_windows += _raw_windows(example, tokenizer, max_length)

    out.truncated = len(over)
    if failed:
        origin, reason = failed[0]
        out.findings.append(
            Finding(
                "error",
                "chat-template-fails",
                f"the chat template of {_tokenizer_name(tokenizer)} cannot render {len(failed)} "
                f"of {_n(len(chats), 'conversation')} (first, {origin}: {reason}); fix those examples "
                "or use a base model whose template accepts them",
                tuple(o for o, _ in failed[:listed]),
            )
        )
    if over:
        over.sort(reverse=True)
        worst = ", ".join(f"{o} ({t})" for t, o in over[:listed])
        dropped = (
            f"; {len(nothing_left)} of them would keep no trained token and be dropped"
            if nothing_left
            else ""
        )
        unit = "words, estimated" if out.chat_unit == _WORDS else "tokens"
        out.findings.append(
            Finding(
                "warning",
                "truncated",
                f"{_n(len(over), 'conversation')} {_are(len(over))} longer than max length "
                f"{max_length} and will be "
                f"cut{dropped}; longest ({unit}): {worst}; raise --max-length or shorten them",
                tuple(o for _, o in over[:listed]),
            )
        )
    return out


_WORDS = "words (estimate)"
_NO_LIMIT = sys.maxsize


def _render_chat(example: Example, tokenizer: Any, max_length: int) -> tuple[int, int]:
    """Rendered length and trained tokens left within max_length, exactly as training sees them."""
    from finetune.encoding import IGNORE_INDEX, encode_chat  # here: encoding imports this package

    encoded = encode_chat(example, tokenizer, _NO_LIMIT)
    trained = sum(1 for label in encoded.labels[:max_length] if label != IGNORE_INDEX)
    return len(encoded.input_ids), trained


def _raw_windows(example: Example, tokenizer: Any, max_length: int) -> int:
    from finetune.encoding import encode_raw

    return len(encode_raw(example, tokenizer, max_length))


# --- content checks ---------------------------------------------------------------------------


def _blank_texts(examples: Sequence[Example], listed: int) -> list[Finding]:
    replies, prompts, texts = [], [], []
    for example in examples:
        if not example.is_chat:
            if not (example.text or "").strip():
                texts.append(example.origin)
            continue
        for i, message in enumerate(example.messages):
            if not message.content.strip():
                where = f"{example.origin} ({message.role} message {i + 1})"
                (replies if message.role == "assistant" else prompts).append(where)
    findings = []
    if replies:
        findings.append(
            Finding(
                "error",
                "blank-reply",
                f"{_n(len(replies), 'assistant message')} {_are(len(replies))} empty or "
                "whitespace only "
                f"({', '.join(replies[:listed])}); write the reply or drop the example",
                tuple(replies[:listed]),
            )
        )
    if texts:
        findings.append(
            Finding(
                "error",
                "blank-text",
                f"{_n(len(texts), 'raw text')} {_are(len(texts))} empty or whitespace only "
                f"({', '.join(texts[:listed])}); "
                "remove them",
                tuple(texts[:listed]),
            )
        )
    if prompts:
        findings.append(
            Finding(
                "warning",
                "blank-prompt",
                f"{_n(len(prompts), 'system/user message')} {_are(len(prompts))} empty or "
                "whitespace only "
                f"({', '.join(prompts[:listed])}); the reply then answers nothing",
                tuple(prompts[:listed]),
            )
        )
    return findings


def _too_few(samples: int, chats: int, windows: int, config: CheckConfig) -> list[Finding]:
    what = f"{samples} training samples ({chats} conversations + {windows} raw-text windows)"
    if samples < config.min_samples_error:
        return [
            Finding(
                "error",
                "too-few-samples",
                f"only {what}; at least {config.min_samples_error} are needed for an adapter to "
                f"learn anything ({config.min_samples_warning}+ recommended): add examples",
            )
        ]
    if samples < config.min_samples_warning:
        return [
            Finding(
                "warning",
                "few-samples",
                f"only {what}; below {config.min_samples_warning} an adapter tends to memorise "
                "them rather than learn the voice: add examples if you can, keep epochs low",
            )
        ]
    return []


# --- duplicates and diversity -----------------------------------------------------------------


def _exact_duplicates(
    examples: Sequence[Example], listed: int
) -> tuple[list[Finding], int, list[Example]]:
    """Findings, number of extra copies, and the first example of each distinct content."""
    by_content: dict[Any, list[Example]] = defaultdict(list)
    for example in examples:
        key = (
            tuple((m.role, m.content.strip(), m.weight) for m in example.messages)
            if example.is_chat
            else (example.text or "").strip()
        )
        by_content[key].append(example)
    repeated = [g for g in by_content.values() if len(g) > 1]
    extra = sum(len(g) - 1 for g in repeated)
    firsts = [g[0] for g in by_content.values()]
    if not extra:
        return [], 0, firsts
    repeated.sort(key=len, reverse=True)
    shown = [
        f"{g[1].origin} = {g[0].origin}" + (f" (x{len(g)})" if len(g) > 2 else "") for g in repeated
    ]
    finding = Finding(
        "warning",
        "exact-duplicates",
        f"{_copies(extra)} of other examples ({'; '.join(shown[:listed])}); remove "
        "them: each copy is trained on again and over-weights that example",
        tuple(g[1].origin for g in repeated[:listed]),
    )
    return [finding], extra, firsts


def _near_duplicates(unique: list[Example], config: CheckConfig) -> tuple[list[Finding], int, int]:
    texts = [_whole_text(e) for e in unique]
    pairs = similar_pairs(texts, config.near_duplicate_jaccard, config.shingle_words)
    found = groups(len(unique), list(pairs))
    if not found:
        return [], 0, 0
    covered = sum(len(g) for g in found)
    shown = []
    for g in found[: config.listed_origins]:
        members = set(g)
        best = max((s for (i, _), s in pairs.items() if i in members), default=0.0)
        more = f" and {len(g) - 2} more" if len(g) > 2 else ""
        shown.append(f"{unique[g[0]].origin} ~ {unique[g[1]].origin}{more} ({best:.2f})")
    finding = Finding(
        "warning",
        "near-duplicates",
        f"{covered} examples form {_n(len(found), 'group')} of near-duplicates (word "
        f"{config.shingle_words}-gram Jaccard >= {config.near_duplicate_jaccard}): "
        f"{'; '.join(shown)}; keep one of each group or make them differ",
        tuple(unique[g[0]].origin for g in found[: config.listed_origins]),
    )
    return [finding], len(found), covered


def _diversity(examples: Sequence[Example], config: CheckConfig) -> tuple[list[Finding], float]:
    """Template clustering: how many examples train on a text that nearly repeats another's."""
    if not examples:
        return [], 0.0
    by_text: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_text[" ".join(_trained_text(example).lower().split())].append(example)
    by_text.pop("", None)  # blank replies are reported on their own
    copies_of = list(by_text.values())  # one entry per distinct trained text
    pairs = similar_pairs(list(by_text), config.near_copy_jaccard, config.shingle_words)
    clusters = [
        [e for i in c for e in copies_of[i]] for c in groups(len(copies_of), list(pairs), 1)
    ]
    clusters = [c for c in clusters if len(c) > 1]
    near_copies = sum(len(c) for c in clusters)
    share = near_copies / len(examples)
    if share <= config.near_copy_share_warning:
        return [], share
    largest = max(clusters, key=len)
    finding = Finding(
        "warning",
        "template-clustering",
        f"{share:.0%} of examples ({near_copies} of {len(examples)}) train on a near-copy of "
        f"another example's reply or text (word {config.shingle_words}-gram Jaccard >= "
        f"{config.near_copy_jaccard}; warned above {config.near_copy_share_warning:.0%}); the "
        f"largest cluster has {len(largest)} examples like {largest[0].origin}: the adapter "
        "will learn that template rather than the voice; vary the replies",
        tuple(e.origin for e in largest[: config.listed_origins]),
    )
    return [finding], share


def _whole_text(example: Example) -> str:
    if not example.is_chat:
        return example.text or ""
    return "\n".join(m.content for m in example.messages if m.role != "system")


def _trained_text(example: Example) -> str:
    if not example.is_chat:
        return example.text or ""
    return "\n".join(m.content for m in example.messages if m.role == "assistant" and m.weight)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _copies(count: int) -> str:
    return f"{count} exact {'copy' if count == 1 else 'copies'}"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def _tokenizer_name(tokenizer: Any) -> str | None:
    if tokenizer is None:
        return None
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    return Path(name).name if Path(name).is_absolute() else name
