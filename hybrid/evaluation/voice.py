"""The voice score: how much an answer sounds like the adapter's style data.

A logistic regression on MiniLM sentence embeddings (the offline embedder the knowledge bases
use) is fitted with the adapter's own style replies (the assistant turns of its training
data) as positives and the base model's answers to the same prompts as negatives. The score
of an answer is the classifier's probability of "style". Before it scores anything it is
validated on a held-out split of both sides (ROC AUC; mean score of held-out style replies and
of held-out base answers), then refitted on everything. Citation markers ([1]) are removed
before scoring: they are the app template's, not the voice.

Fact answers score lower than the style replies whatever their voice (the classifier was fitted
on replies about opinions, not figures), so a difference between two apps' fact answers needs
an anchor: `voice_anchor` scores the other app's own answers once as they are and once with one
figure-free closing sentence of the style replies appended, i.e. what "the same facts, then a
sentence of hers" is worth on this scale.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hybrid.errors import UsageError
from hybrid.evaluation.labelled import read_jsonl

Embed = Callable[[list[str]], "list[list[float]]"]
_MARKERS = re.compile(r"\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")


@dataclass(frozen=True)
class StyleExample:
    prompt: tuple[dict, ...]
    """The messages before the reply (system and user turns)."""
    reply: str


def style_files(path: Path) -> list[Path]:
    """The chat JSONL files of a training config (its `data`), a folder, or one file."""
    if path.suffix in (".yaml", ".yml"):
        from hybrid.config import load_train_config

        paths = list(load_train_config(path).data)
    else:
        paths = [path]
    files: list[Path] = []
    for p in paths:
        files += sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
    return [f for f in files if f.suffix == ".jsonl"]


def read_style_examples(paths: Sequence[Path]) -> list[StyleExample]:
    """The last assistant reply of every chat example (`{"messages": [...]}`) in the files.

    Raises:
        UsageError: a missing file or a malformed line (named file:line), or no replies.
    """
    examples = []
    for path in paths:
        for number, row in read_jsonl(path, "style data file"):
            if not isinstance(row, dict):
                raise UsageError(f"{path}:{number}: not a JSON object")
            messages = row.get("messages")
            if not isinstance(messages, list):
                continue  # raw-text examples carry no replies
            last = max(
                (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None
            )
            if last is not None and (messages[last].get("content") or "").strip():
                examples.append(StyleExample(tuple(messages[:last]), messages[last]["content"]))
    if not examples:
        raise UsageError(f"no assistant replies in the style data ({', '.join(map(str, paths))})")
    return examples


def read_baseline(path: Path) -> list[str]:
    """Base-model replies (`{"reply": ...}` per line) written by `generate_baseline`.

    Raises:
        UsageError: a missing file, a malformed line (file:line), or no replies.
    """
    replies = []
    for number, row in read_jsonl(path, "base-reply file"):
        if not isinstance(row, dict) or "reply" not in row:
            raise UsageError(f'{path}:{number}: expected {{"reply": "..."}}')
        reply = row["reply"]
        if isinstance(reply, str) and reply.strip():
            replies.append(reply)
    if not replies:
        raise UsageError(f"{path}:1: no base-model replies in the file")
    return replies


def generate_baseline(
    examples: Sequence[StyleExample], generate: Callable[[list[dict]], str]
) -> list[dict]:
    """The base model's answer to each style prompt (`generate(messages) -> text`)."""
    rows = []
    for ex in examples:
        messages = [dict(m) for m in ex.prompt]
        rows.append({"prompt": messages, "reply": generate(messages)})
    return rows


def strip_markers(text: str) -> str:
    return _MARKERS.sub("", text).strip()


def minilm_embed(texts: list[str]) -> list[list[float]]:
    """Embeddings from the knowledge bases' default offline embedder (all-MiniLM-L6-v2)."""
    from retrieval.config import EmbedderConfig
    from retrieval.embedders import load_embedder

    model = load_embedder(EmbedderConfig()).model
    return model.get_text_embedding_batch(texts)


@dataclass(frozen=True)
class VoiceValidation:
    auc: float
    """ROC AUC on the held-out split: style replies vs base answers."""
    heldout_style_mean: float
    heldout_base_mean: float
    train_style: int
    train_base: int
    heldout_style: int
    heldout_base: int

    def to_dict(self) -> dict:
        return asdict(self)


class VoiceModel:
    """Fitted, validated style classifier; `score(texts)` -> probability of the style."""

    def __init__(self, classifier, embed: Embed, validation: VoiceValidation):
        self.classifier = classifier
        self.embed = embed
        self.validation = validation

    def score(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        vectors = self.embed([strip_markers(t) or t for t in texts])
        return [float(p) for p in self.classifier.predict_proba(vectors)[:, 1]]


def fit_voice_model(
    style: Sequence[str],
    base: Sequence[str],
    embed: Embed | None = None,
    heldout_share: float = 0.25,
    seed: int = 0,
) -> VoiceModel:
    """Fit on style replies (positives) vs base answers (negatives), validated on a held-out
    share of each side, then refitted on all of them.

    Raises:
        UsageError: fewer than 4 texts on a side (nothing to hold out).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    if len(style) < 4 or len(base) < 4:
        raise UsageError(
            f"the voice model needs at least 4 style replies and 4 base answers "
            f"(got {len(style)} and {len(base)})"
        )
    embed = embed or minilm_embed
    rng = random.Random(seed)
    pos = [strip_markers(t) for t in style]
    neg = [strip_markers(t) for t in base]
    rng.shuffle(pos)
    rng.shuffle(neg)
    cut_pos = max(1, round(len(pos) * heldout_share))
    cut_neg = max(1, round(len(neg) * heldout_share))
    vectors = embed(pos + neg)
    pos_v, neg_v = vectors[: len(pos)], vectors[len(pos) :]
    train_x = list(pos_v[cut_pos:]) + list(neg_v[cut_neg:])
    train_y = [1] * (len(pos) - cut_pos) + [0] * (len(neg) - cut_neg)
    held_x = list(pos_v[:cut_pos]) + list(neg_v[:cut_neg])
    held_y = [1] * cut_pos + [0] * cut_neg

    def classifier():
        return LogisticRegression(max_iter=2000, class_weight="balanced")

    model = classifier().fit(train_x, train_y)
    held_p = model.predict_proba(held_x)[:, 1]
    validation = VoiceValidation(
        auc=float(roc_auc_score(held_y, held_p)),
        heldout_style_mean=float(held_p[:cut_pos].mean()),
        heldout_base_mean=float(held_p[cut_pos:].mean()),
        train_style=len(pos) - cut_pos,
        train_base=len(neg) - cut_neg,
        heldout_style=cut_pos,
        heldout_base=cut_neg,
    )
    final = classifier().fit(list(pos_v) + list(neg_v), [1] * len(pos) + [0] * len(neg))
    return VoiceModel(final, embed, validation)


def closing_sentences(replies: Sequence[str]) -> list[str]:
    """The closing sentence of each style reply (citation markers removed), chosen as training
    chooses the closings of its grounded-voice examples (`voice_sentences`): the last
    sentence of a figure-free reply of several sentences, what the voice adds to an answer
    without adding a fact."""
    from hybrid.apps.grounded_examples import voice_sentences

    closings = [voice_sentences(strip_markers(reply))[1] for reply in replies]
    return [closing for closing in closings if closing]


def anchor_pairs(
    model: VoiceModel, answers: Sequence[str], closings: Sequence[str], seed: int = 0
) -> list[tuple[float, float]]:
    """(score with a closing sentence appended, score as it is) for each answer; the closing is
    drawn at random (seeded) from `closings`. Empty when there are no closings."""
    if not closings or not answers:
        return []
    rng = random.Random(seed)
    wrapped = [f"{a.rstrip()} {rng.choice(closings)}" for a in answers]
    scores = model.score(list(answers) + wrapped)
    return list(zip(scores[len(answers) :], scores[: len(answers)], strict=True))
