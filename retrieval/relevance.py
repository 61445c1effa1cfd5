"""How similar an unrelated question looks to one knowledge base: the floor behind
`min_similarity: auto`.

A fixed cosine threshold means different things for different corpora, chunk sizes and
embedders: with 64-token chunks of an annual report an off-topic question ("Who won the World
Cup?") reaches 0.35, with 200-token chunks far less. So the floor is measured per knowledge
base: the questions below, about everything but a typical knowledge base (cooking, astronomy,
sport, history, small talk), are each matched against the knowledge base's chunks, and the
floor is the 95th percentile of their best cosine similarities: a question must look more like
the knowledge base than 19 in 20 unrelated questions do. A corpus that happens to cover a few
of these topics (a coffee brand and the cold-brew question) moves only the top few of the 60,
which the percentile leaves out. Measured on the three example knowledge bases (docs/
retrieval.md): every answerable labelled question stays above the floor, and more off-topic
ones fall below it than below the old fixed 0.25.

Only what a similarity threshold can do: a question on the knowledge base's topic that its
documents do not answer ("the CEO's salary" against an annual report) looks relevant and is
left to the model and the app's prompt.
"""

from __future__ import annotations

import numpy as np

FLOOR_QUANTILE = 0.95
"""The share of the unrelated questions that must look less relevant than an accepted passage."""

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


def relevance_floor(collection, embed_query) -> float | None:
    """The cosine similarity a passage of `collection` must reach to count as relevant: the
    FLOOR_QUANTILE of the best similarities of OFF_TOPIC_QUESTIONS (embedded with
    `embed_query`, the knowledge base's query embedding). None for an empty collection (no
    passage to judge)."""
    if collection.count() == 0:
        return None
    vectors = [embed_query(q) for q in OFF_TOPIC_QUESTIONS]
    found = collection.query(query_embeddings=vectors, n_results=1, include=["distances"])
    best = [1.0 - d[0] for d in found["distances"] if d]  # cosine distance -> similarity
    return round(float(np.quantile(best, FLOOR_QUANTILE)), 4)
