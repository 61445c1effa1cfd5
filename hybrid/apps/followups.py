"""The retrieval query of a conversation: a follow-up ("And the year before?") is searched with
the user questions before it, a question that stands on its own is searched alone.

A cheap rule, on purpose (it runs before every app answer, and a 135M model rewrites questions
worse than it answers them): the last user message reads as a follow-up when it starts like one
("and", "what about", "how about", "same for", ...), refers back ("it", "that", "those", "the
year before", ...) with few words of its own, or has at most two content words. Then the
earlier user messages (up to `turns`, newest first, stopping after the first that stands on its
own) are put before it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_OPENERS = re.compile(
    r"^\s*(and|also|but|or|so|then|plus|what about|how about|what of|and what|and how|same for"
    r"|same question|what else|why|how come|compared (to|with)|versus|vs\.?|in (that|this) case"
    r"|the same|ok(ay)?,? (and|what|how))\b",
    re.IGNORECASE,
)
_BACK_REFERENCES = re.compile(
    r"\b(it|its|it's|that|this|those|these|they|them|their|he|she|him|her|one|ones"
    r"|the (year|month|quarter|period|time) (before|after|earlier)|the previous|the prior"
    r"|the other|the same|former|latter|above|mentioned|then)\b",
    re.IGNORECASE,
)
_NAMED = re.compile(r"\b([A-Z][A-Za-z]*-?[A-Z0-9]\w*|[A-Z][a-z]+)\b")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'$%.,-]*")
_FUNCTION_WORDS = set(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "so",
        "also",
        "then",
        "plus",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "done",
        "have",
        "has",
        "had",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "it",
        "its",
        "it's",
        "that",
        "this",
        "those",
        "these",
        "they",
        "them",
        "their",
        "there",
        "he",
        "she",
        "him",
        "her",
        "his",
        "one",
        "ones",
        "about",
        "for",
        "of",
        "in",
        "on",
        "at",
        "to",
        "from",
        "by",
        "with",
        "as",
        "than",
        "same",
        "other",
        "previous",
        "prior",
        "before",
        "after",
        "earlier",
        "later",
        "year",
        "years",
        "month",
        "quarter",
        "period",
        "time",
        "tell",
        "me",
        "please",
        "us",
        "you",
        "your",
        "i",
        "we",
        "our",
        "more",
        "again",
        "else",
        "too",
        "still",
        "just",
        "only",
        "any",
        "some",
        "much",
        "many",
        "now",
        "ok",
        "okay",
        "yes",
        "no",
        "thanks",
    ]
)


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w.strip(".,") not in _FUNCTION_WORDS]


def is_follow_up(message: str) -> bool:
    """Whether `message` needs the conversation before it to be understood."""
    if _OPENERS.match(message):
        return True
    words = content_words(message)
    # a name, product code or acronym of its own: the question says what it is about
    named = _NAMED.search(message[1:]) is not None
    if len(words) <= 1:
        return not named
    return bool(_BACK_REFERENCES.search(message)) and len(words) <= 4 and not named


def message_text(message: dict) -> str:
    """The text of an OpenAI chat message (a string, or parts of type text)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def retrieval_query(messages: Sequence[dict], *, turns: int = 2) -> str:
    """What to search for: the last user message, after the earlier user questions it follows
    up on (at most `turns` of them)."""
    questions = [message_text(m) for m in messages if m.get("role") == "user"]
    questions = [q.strip() for q in questions if q.strip()]
    if not questions:
        return ""
    query = [questions[-1]]
    for earlier in reversed(questions[:-1][-turns:] if turns else []):
        if not is_follow_up(query[0]):
            break
        query.insert(0, earlier)
    return " ".join(query)
