"""Context-aware training data (the RAFT recipe, composed here; `finetune/` only sees plain
examples): each chat example's prompt is laid out as the app will serve it, the app's persona
and template with the passages its knowledge base returns for that example's question, so the
adapter learns to keep its voice with retrieved context in front of it."""

from __future__ import annotations

import random
from collections.abc import Sequence

from finetune.data.schema import Example, Message
from hybrid.apps.budget import ContextExceeded, PromptBudget
from hybrid.apps.pipeline import AppPipeline
from hybrid.apps.prompt import system_prompt


def with_app_context(
    examples: Sequence[Example],
    pipeline: AppPipeline,
    *,
    share: float = 1.0,
    seed: int = 0,
    budget: PromptBudget | None = None,
) -> tuple[list[Example], int]:
    """(examples, how many got context). Raw-text examples and those without a user turn stay
    as they are; the example's own system message is replaced by the app's. With `budget`
    (the base tokenizer and the training max_length), the lowest-ranked passages are dropped
    until the whole example fits, so no answer is truncated away."""
    rng = random.Random(seed)
    out: list[Example] = []
    changed = 0
    for example in examples:
        users = [m for m in example.messages if m.role == "user"]
        if not example.is_chat or not users or rng.random() >= share:
            out.append(example)
            continue
        passages = pipeline.retrieve(users[-1].content)
        turns = tuple(m for m in example.messages if m.role != "system")
        if budget is not None and passages and turns[-1].role == "assistant":
            before = [{"role": m.role, "content": m.content} for m in turns[:-1]]
            answer = budget.count([{"role": "assistant", "content": turns[-1].content}])
            try:
                passages = budget.fit(pipeline.spec, passages, before, answer)
            except ContextExceeded:  # too long even without passages: no context to add
                passages = []
        system = Message("system", system_prompt(pipeline.spec, passages))
        out.append(Example(origin=example.origin, messages=(system, *turns)))
        changed += 1
    return out, changed
