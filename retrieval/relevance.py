"""How similar an unrelated question looks to one knowledge base: the floor behind
`min_similarity: auto`.

A fixed cosine threshold means different things for different corpora, chunk sizes and
embedders: with 64-token chunks of an annual report an off-topic question ("Who won the World
Cup?") reaches 0.35, with 200-token chunks far less. So the floor is measured per knowledge
base: the questions below, about everything but a typical knowledge base (cooking, astronomy,
sport, history, small talk), are each searched as the app's questions are, and the floor is
the 90th percentile of the best cosine similarity among their hits: a question must look more
like the knowledge base than 9 in 10 unrelated questions do. A corpus that happens to cover a
few of these topics (a kettle shop and the cold-brew tea or cast-iron-pan questions) moves only
the top few of the 60, which the percentile leaves out. Measured on the three example knowledge
bases (bench/relevance_floor.py): no answerable labelled question falls below the floor, and at
least as many off-topic ones do as below the old fixed 0.25.

Only what a similarity threshold can do: a question on the knowledge base's topic that its
documents do not answer ("the CEO's salary" against an annual report) looks relevant and is
left to the model and the app's prompt.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FLOOR_QUANTILE = 0.90
"""The share of the unrelated questions that must look less relevant than an accepted passage.
0.95 was measured too: on a tea-kettle shop the near-topic questions (cleaning a pan, cold-brew
tea, boiling water) lifted it above a real question ("What is your returns window?"); 0.90
stays clear of six such questions in the 60 (bench/results/relevance_floor.md)."""

OFF_TOPIC_QUESTIONS = (
    "How do I make fluffy pancakes without eggs?",
    "Who painted the ceiling of the Sistine Chapel?",
    "How long should I boil an egg for a soft yolk?",
    "What causes the northern lights?",
    "Can you recommend a good science fiction novel?",
    "How do I change a flat tire on a bicycle?",
    "What is the difference between a crocodile and an alligator?",
    "Why is the sky blue?",
    "How many players are on a basketball team?",
    "What is the best way to learn to play the guitar?",
    "How do I get rid of aphids on my roses?",
    "What is the boiling point of water at high altitude?",
    "Tell me a joke about cats.",
    "How tall is Mount Kilimanjaro?",
    "What should I pack for a week of camping?",
    "How do vaccines train the immune system?",
    "What is the plot of Hamlet?",
    "How do I remove a red wine stain from a carpet?",
    "Which planet has the longest day?",
    "What are the rules of chess castling?",
    "How often should I water a cactus?",
    "Who invented the telephone?",
    "What is a good stretching routine before running?",
    "How do I say thank you in Japanese?",
    "What is the population of Iceland?",
    "How do bees make honey?",
    "What is the tallest building in the world?",
    "How can I fall asleep faster at night?",
    "What year did the Berlin Wall fall?",
    "How do I train my puppy to sit?",
    "What is photosynthesis?",
    "Which ocean is the deepest?",
    "What is the speed of sound in air?",
    "Who is the author of The Hobbit?",
    "How do I knit a scarf for beginners?",
    "What are the symptoms of the common cold?",
    "How far is the Moon from the Earth?",
    "What is the best time of year to visit Kyoto?",
    "How do I tune a violin?",
    "Why do leaves change color in autumn?",
    "What does a marine biologist do?",
    "How do I make a paper airplane that flies far?",
    "What languages are spoken in Switzerland?",
    "How many bones are in the human body?",
    "What is the recipe for a classic margherita pizza?",
    "Who composed the Four Seasons?",
    "How does a rainbow form?",
    "What is the difference between weather and climate?",
    "How do I clean a cast iron pan?",
    "What is the largest desert on Earth?",
    "Which dinosaurs could fly?",
    "How do I write a haiku?",
    "What is the Pythagorean theorem?",
    "How do I start a vegetable garden on a balcony?",
    "What is the meaning of life?",
    "Hi, how are you today?",
    "What's your favourite color?",
    "What is the currency of Brazil?",
    "Who discovered penicillin?",
    "How do I make cold brew tea lemonade for a party?",
)


def relevance_floor(
    best_similarity: Callable[[str], float | None], quantile: float = FLOOR_QUANTILE
) -> float | None:
    """The cosine similarity a passage must reach to count as relevant: the FLOOR_QUANTILE of
    `best_similarity` over OFF_TOPIC_QUESTIONS, where `best_similarity(question)` is the best
    similarity among the hits a query returns, searched exactly as the real questions will be
    (same mode, top_k and filters), so the floor and the filter measure the same thing. None
    when no question finds any passage (an empty knowledge base, or filters that match
    nothing)."""
    best = [s for s in map(best_similarity, OFF_TOPIC_QUESTIONS) if s is not None]
    if not best:
        return None
    return round(float(np.quantile(best, quantile)), 4)
