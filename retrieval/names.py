"""The names a question asks about: the capitalised words inside it ("Apple" in "What was
Apple's revenue in 2024?", "Jupiter", "Federal Reserve") and mixed-case ones ("iPhone").

A search can only be about a name that some chunk of the knowledge base contains. Embeddings do
not see that: "What was Apple's revenue?" is as similar to an annual report's revenue passage
as the report's own question, so a similarity floor lets it through, and the model answers with
the report's figure. `QueryOptions.known_names_only` returns no passages for such a question.

A question's first word, and the word after a sentence's end, are capitalised anyway and not
taken; nor are months, weekdays, titles ("Mr", "Dr"), the words of a speaker's own name ("I'm
Anna", "my name is Anna Lee": a greeting, not the subject) or words written in capitals
("CEO", "EBITDA": acronyms are often spelt out in documents).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’&-]*")
_SENTENCE_END = re.compile(r"[.!?:;\"“(]\s*$")
_SELF = re.compile(
    r"\b(?:i\s*am|i['’]m|im|my\s+name\s+is|this\s+is|call\s+me|name['’]s)\s+$", re.IGNORECASE
)
MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
_NOT_NAMES = frozenset(
    (
        *MONTHS,
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
        "mr", "mrs", "ms", "dr", "prof", "sir", "madam", "dear",
        "hi", "hello", "hey", "thanks", "thank", "please", "ok", "okay", "yes", "no", "i",
    )
)  # fmt: skip


def _is_name(word: str) -> bool:
    bare = re.sub(r"['’]s$", "", word)
    if len(bare) < 2 or bare.lower() in _NOT_NAMES or bare.isupper() or bare[:2] in ("I'", "I’"):
        return False
    capitalised = bare[0].isupper() and any(c.islower() for c in bare[1:])
    mixed = bare[0].islower() and any(c.isupper() for c in bare[1:])  # iPhone, eBay
    return capitalised or mixed


def question_names(text: str) -> list[str]:
    """The names `text` asks about, as written (possessive 's removed), in order, once each."""
    found: list[str] = []
    speaker = False
    for match in _WORD.finditer(text):
        before = text[: match.start()]
        word = match.group(0)
        opens = not before.strip() or bool(_SENTENCE_END.search(before))
        if _SELF.search(before):
            speaker = True  # "I'm Anna Lee": the following capitalised words are the speaker
        elif not _is_name(word):
            speaker = False
        if opens or speaker or not _is_name(word):
            continue
        name = re.sub(r"['’]s$", "", word)
        if name not in found:
            found.append(name)
    return found
