"""Abstention training examples (RAFT's "no golden passage" share): questions the shown passages
do not answer, answered with the app's no-context message, so the adapter learns to stop where
the retrieval floor (`min_similarity`) lets an unrelated question through.

Two kinds, alternating:
- off-topic questions (the relevance floor's own probes, retrieval/relevance.py) shown the
  passages the app's search returns for them: exactly what reaches the model when such a
  question passes the floor;
- questions about a figure statement of the knowledge base (as grounded_examples asks them,
  figures perturbed) shown only passages that share none of the statement's subject words: the
  topic is the knowledge base's, the answer is not in the context.

Labelled evaluation questions are never asked (`exclude`). `hybrid train` adds them when a
training config's `context:` section asks for `abstention_examples: N`.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence

from finetune.data.schema import Example, Message
from hybrid.apps.budget import PromptBudget
from hybrid.apps.grounded_examples import (
    FIGURE,
    FigurePerturber,
    app_messages,
    figure_statements,
    fits,
    normalise_question,
    question_about,
    shown_texts,
)
from hybrid.apps.prompt import Passage
from hybrid.apps.spec import AppSpec

_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_COMMON = {"what", "which", "were", "with", "from", "that", "this", "their", "there", "year"}


def _subject_words(subject: str) -> set[str]:
    return {w for w in _WORD.findall(subject.lower()) if w not in _COMMON}


def abstention_examples(
    passages: Sequence[Passage],
    spec: AppSpec,
    *,
    count: int,
    seed: int = 0,
    off_topic: Sequence[tuple[str, Sequence[Passage]]] = (),
    exclude: Sequence[str] = (),
    budget: PromptBudget | None = None,
    served: Callable[[Sequence[int]], Sequence[str]] | None = None,
) -> list[Example]:
    """`count` examples answered with the app's no-context message: alternately an `off_topic`
    question (with the passages the app's search shows for it, at most once each) and a
    question about one of `passages`' figure statements shown the app's top_k other passages
    that share none of its subject words. `served` as in `grounded_examples`. With `budget`,
    passages are dropped from the end until the example fits."""
    if count <= 0:
        return []
    rng = random.Random(seed * 7919 + 17)
    held_out = {normalise_question(q) for q in exclude}
    shown_count = max(1, spec.retrieval.top_k)
    text_of = shown_texts(passages, served)
    statements = figure_statements(passages)
    with_figures = [i for i, p in enumerate(passages) if FIGURE.search(p.text)]
    unrelated = [
        (q, list(ps)) for q, ps in off_topic if ps and normalise_question(q) not in held_out
    ]
    rng.shuffle(unrelated)
    out: list[Example] = []
    for turn in range(count * 5):
        if len(out) >= count or (not unrelated and not statements):
            break
        if turn % 2 == 0 and unrelated:
            question, found = unrelated.pop()
            shown = found[:shown_count]
            origin = "abstain:off-topic"
        elif statements:
            statement = rng.choice(statements)
            perturb = FigurePerturber(rng)
            question = question_about(statement, perturb(statement.subject), rng)
            words = _subject_words(statement.subject)
            pool = [
                i
                for i in with_figures
                if i != statement.passage and not words & set(_WORD.findall(text_of(i).lower()))
            ]
            if not words or not pool:
                continue
            picked = rng.sample(pool, min(shown_count, len(pool)))
            shown = [dataclasses.replace(passages[i], text=perturb(text_of(i))) for i in picked]
            origin = f"abstain:{passages[statement.passage].label}"
        else:
            continue
        if normalise_question(question) in held_out:
            continue
        messages = _fitted(spec, shown, question, budget)
        if messages is None:
            continue
        out.append(
            Example(
                origin=f"{origin}#{len(out)}",
                messages=tuple(Message(m["role"], m["content"]) for m in messages),
            )
        )
    return out


def _fitted(
    spec: AppSpec, shown: Sequence[Passage], question: str, budget: PromptBudget | None
) -> list[dict] | None:
    for keep in range(len(shown), 0, -1):
        numbered = [dataclasses.replace(p, number=n) for n, p in enumerate(shown[:keep], 1)]
        messages = app_messages(spec, numbered, question, spec.no_context.message)
        if fits(budget, messages):
            return messages
    return None
