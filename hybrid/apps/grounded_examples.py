"""Grounded-voice training examples (counterfactual RAFT), composed here from an app's knowledge
base: each example asks about one figure-bearing statement of a passage, shows that passage
among distractors in the app's own prompt layout, and answers by copying the statement with
its `[n]` citation, wrapped in a sentence of the adapter's voice (from its style replies).
Statements are prose sentences ("Revenue rose 18% to $412.6 million.") and the fields of
product-style documents: table rows under their column header, `Key: value` list items, each
with the document title or section heading it belongs to (markdown, HTML text, plain text).

Every figure is perturbed consistently across the prompt and the answer (seeded: 412.6 ->
377.9, years shifted), so the adapter cannot learn the knowledge base's facts themselves: the
only way to be right is to copy from the passages, which is the behaviour wanted at serve time.
Labelled evaluation questions are kept out of the generated set (`exclude`).

Plain functions; `hybrid train` calls `grounded_examples` when a training config's `context:`
section asks for `grounded_examples: N`.

Why one module: finding statements, asking about them and perturbing their figures share one figure
grammar and one seeded generator; split, each part would import the others' private rules.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from finetune.data.schema import Example, Message
from hybrid.apps.budget import PromptBudget
from hybrid.apps.prompt import Passage, system_prompt
from hybrid.apps.spec import AppSpec
from hybrid.errors import ConfigError, UsageError
from hybrid.evaluation.labelled import read_cases

# A number not glued to a word, a hyphen or a colon (model names like AMR-600, times like 10:00).
FIGURE = re.compile(r"(?<![\w\-:.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w\-:]|,\d|\.\d)")
_MONTH = re.compile(
    r"(January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?\s+$"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])")
_VERB = re.compile(
    r"\b(rose|fell|grew|improved|increased|decreased|declined|dropped|climbed|jumped|doubled|"
    r"reached|totaled|totalled|was|were|is|are|stood at|came to|amounted to|reduced|cut)\b"
)
_CHANGE_VERBS = {
    "rose",
    "fell",
    "grew",
    "improved",
    "increased",
    "decreased",
    "declined",
    "dropped",
    "climbed",
    "jumped",
    "doubled",
    "reduced",
    "cut",
}
_PRONOUNS = {"it", "this", "that", "they", "he", "she", "we", "which", "these", "those", "there"}
_PREPOSITIONS = {
    "like",
    "unlike",
    "in",
    "on",
    "at",
    "by",
    "for",
    "during",
    "after",
    "before",
    "since",
    "with",
    "over",
    "from",
    "as",
    "when",
    "while",
    "although",
    "because",
    "if",
    "under",
    "across",
    "through",
}
_ORDINALS = {"first", "second", "third", "fourth", "fifth", "last", "next"}
_POSSESSIVES = {"our": "your", "its": "the company's", "their": "their"}

# Openings that stand on their own (not "Because ...", "If ..." answering a specific question).
_OPENING_WORDS = {"I", "We", "Our", "The", "That", "This", "It", "It's", "Yes,", "No,"}

CHANGE_TEMPLATES = (
    "How did {subject} change?",
    "What happened to {subject}?",
    "Did {subject} go up or down, and by how much?",
    "Can you give me the numbers on {subject}?",
)
STATE_TEMPLATES = (
    "What {be} {subject}?",
    "What figure does the report give for {subject}?",
    "Can you tell me what {subject} {be}?",
)
FIELD_TEMPLATES = (
    "What is {subject} of the {entity}?",
    "Can you tell me {subject} for the {entity}?",
    "{Entity}: what about {subject}?",
)
SECTION_TEMPLATES = ("{Heading}: what is {subject}?", "Under {heading}, what is {subject}?")
GENERIC_TEMPLATES = (
    "What does the report say about {subject}?",
    "Tell me about {subject}.",
)


@dataclass(frozen=True)
class Statement:
    """A sentence of a passage that states at least one figure, and what it is about."""

    passage: int
    """Index into the passage list it came from."""
    text: str
    subject: str
    verb: str
    """The verb of a prose statement; "is" for a field."""
    anchor: str = ""
    """A field's raw line in the passage (where its window is cut); empty for prose."""
    entity: str = ""
    """What a field belongs to: its table column or the document title, if known."""
    heading: str = ""
    """The section heading above a field."""


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


_BULLET = re.compile(r"^(?:[-*•+]|\d{1,2}[.)]|[a-z]\))\s+")
_FIELD = re.compile(r"^(?P<key>[A-Za-z][\w '()/&+.-]{0,40}?)\s*:\s+(?P<value>\S.*)$")
_GENERIC_COLUMNS = {"", "value", "values", "detail", "details", "description", "notes", "info"}


@dataclass(frozen=True)
class Unit:
    """A piece of a passage a statement can come from: a prose sentence or a field."""

    text: str
    """The sentence, or the field's value."""
    heading: str = ""
    """The nearest heading above it."""
    key: str = ""
    """A field's name (a table row's label, the `Key` of a `Key: value` item); empty for prose."""
    entity: str = ""
    """The document title a field belongs to, if known."""
    line: str = ""
    """The raw line a field came from."""
    column: str = ""
    """A table cell's column name (unless generic, like "Value")."""


def _cells(row: str) -> list[str]:
    return [c.strip().strip("*_").strip() for c in row.strip().strip("|").split("|")]


def _is_heading(line: str, plain: str) -> bool:
    if line.startswith("#"):
        return True
    bare = _BULLET.sub("", plain, count=1) if plain[:1].isdigit() else plain
    if bare.isupper() and len(bare) < 80 and not FIGURE.search(bare):
        return True  # "1. HOW OFTEN TO DESCALE", "PRICE"
    return (
        len(plain) < 60
        and not _BULLET.match(plain)
        and not re.search(r"[.!?:;,)]$", plain)
        and not FIGURE.search(plain)
    )


def document_title(text: str) -> str:
    """The heading a document starts with (a `# ` line, an upper-case or a short line without
    a full stop), upper case turned to title case; '' when it starts with prose."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        plain = line.replace("**", "").replace("__", "")
        if line.startswith("|") or not _is_heading(line, plain):
            return ""
        title = plain.lstrip("#").strip()
        return title.title() if title.isupper() else title
    return ""


def text_units(text: str, title: str = "") -> list[Unit]:
    """The prose sentences and fields of a passage, each with the heading above it; `title`
    is its document's (see `document_title`; a chunk from the middle has none of its own).
    Lines are kept apart where the text has structure (headings, table rows, list items,
    `Key: value` lines) and joined where a paragraph wraps (PDF text), so a heading never
    becomes part of a sentence."""
    out: list[Unit] = []
    heading = ""
    header: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.extend(Unit(s, heading) for s in sentences(" ".join(paragraph)))
            paragraph.clear()

    lines = text.splitlines()
    for at, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            flush()
            header = []
            continue
        if line.startswith("|"):
            flush()
            cells = _cells(line)
            if all(set(c) <= set("-: ") for c in cells):
                continue
            following = lines[at + 1].strip() if at + 1 < len(lines) else ""
            if following.startswith("|") and all(set(c) <= set("-: ") for c in _cells(following)):
                header = cells  # a header row is followed by the |---| line
                continue
            names = header[1:] or [""] * (len(cells) - 1)  # a chunk that starts inside a table
            for name, cell in zip(names, cells[1:], strict=False):
                column = "" if name.lower() in _GENERIC_COLUMNS else name
                out.append(Unit(cell, heading, cells[0], title, raw, column))
            continue
        header = []
        plain = line.replace("**", "").replace("__", "")
        field_line = not paragraph and _FIELD.match(plain) and len(plain.split(":")[0].split()) <= 6
        if not field_line and _is_heading(line, plain):
            flush()
            heading = _BULLET.sub("", plain.lstrip("#").strip(), count=1)
            if line.startswith("# "):
                title = heading
            if heading.isupper():
                heading = heading.capitalize()
            continue
        if field_line or _BULLET.match(plain):  # a `Key: value` line, a list item
            flush()
            item = _BULLET.sub("", plain, count=1)
            field_ = _FIELD.match(item)
            if field_ is None:
                out.extend(Unit(s, heading) for s in sentences(item))
                continue
            first, *rest = sentences(field_.group("value")) or [field_.group("value")]
            out.append(Unit(first, heading, field_.group("key").strip(), title, raw))
            out.extend(Unit(s, heading) for s in rest)
            continue
        paragraph.append(plain)
    flush()
    return out


def _lowercase_words(passages: Sequence[Passage]) -> set[str]:
    return {w for p in passages for w in re.findall(r"\b[a-z][a-z'-]*\b", p.text)}


def _clean_subject(raw: str, common: set[str]) -> str | None:
    subject = raw.strip(" ,;:-")
    if ", " in subject:
        head, _, tail = subject.partition(", ")
        # "In 2025, total revenue" -> "total revenue"; "Compass 4.0, the fourth ..." -> "Compass 4.0"
        lead = head.split()
        adverb = len(lead) == 1 and lead[0].lower().endswith("ly")  # "Finally, ..."
        subject = tail if adverb or lead[0].lower() in _PREPOSITIONS else head
        subject = subject.split(", ")[0]
    words = subject.split()
    if not 1 <= len(words) <= 9 or any(c in subject for c in '()[];:"“”'):
        return None
    first = words[0]
    if first.lower() in _PRONOUNS | _PREPOSITIONS | {"and", "but", "or", "so", "then"}:
        return None
    if any(w in _PRONOUNS | {"I"} for w in words[1:]) or words[-1].lower() in _ORDINALS:
        return None
    if any(float(m.group(0).replace(",", "")) >= 10 for m in FIGURE.finditer(subject)):
        return None  # a figure of its own: a clause, not a noun phrase
    if first.lower() in _POSSESSIVES:
        words[0] = _POSSESSIVES[first.lower()]
    elif first[:1].isupper() and first.lower() in common and not first.isupper():
        words[0] = first.lower()  # capitalised only because it starts the sentence
    return " ".join(words)


def _proper_nouns(passages: Sequence[Passage]) -> set[str]:
    """Capitalised words seen inside a sentence ("to Canada"): names, kept capitalised."""
    return {w for p in passages for w in re.findall(r"(?<=[a-z,] )[A-Z][a-z]+\b", p.text)}


def _field_statement(index: int, unit: Unit, proper: set[str]) -> Statement | None:
    key = unit.key
    if not 1 <= len(key.split()) <= 6 or FIGURE.search(key) or not _perturbable(unit.text):
        return None
    first = key.split()[0]
    if first[:1].isupper() and first[1:].islower() and first not in proper:
        key = key[0].lower() + key[1:]  # "Water tank" -> "water tank"; "Canada", "USB" stay
    value = unit.text.rstrip(" ;,")
    label = f"{unit.key} ({unit.column})" if unit.column else unit.key
    subject = f"the {key} ({unit.column})" if unit.column else f"the {key}"
    text = f"{label}: {value}" + ("" if value.endswith((".", "!")) else ".")
    return Statement(
        index, text, subject, "is", anchor=unit.line, entity=unit.entity, heading=unit.heading
    )


def figure_statements(
    passages: Sequence[Passage], *, min_chars: int = 30, max_chars: int = 280
) -> list[Statement]:
    """The statements of `passages` that state a figure: prose sentences with a verb like
    rose/fell/was/reached, each with its subject (the noun phrase before the verb), and fields
    (table rows, `Key: value` items) with their key and what they belong to."""
    common = _lowercase_words(passages)
    proper = _proper_nouns(passages)
    first_chunks: dict[str, Passage] = {}
    for passage in passages:  # each document's title, from its first chunk
        known = first_chunks.get(passage.source)
        if known is None or passage.start_char < known.start_char:
            first_chunks[passage.source] = passage
    titles = {source: document_title(p.text) for source, p in first_chunks.items()}
    found: list[Statement] = []
    seen: set[str] = set()
    for index, passage in enumerate(passages):
        for unit in text_units(passage.text, titles.get(passage.source, "")):
            if unit.key:
                field_ = _field_statement(index, unit, proper)
                if field_ is not None and field_.text not in seen:
                    seen.add(field_.text)
                    found.append(field_)
                continue
            sentence = unit.text
            if not min_chars <= len(sentence) <= max_chars or sentence in seen:
                continue
            if not sentence.endswith((".", "!")) or not FIGURE.search(sentence):
                continue
            verb = _VERB.search(sentence)
            if verb is None or (FIGURE.search(sentence[: verb.start()]) and "," in sentence[:3]):
                continue
            subject = _clean_subject(sentence[: verb.start()], common)
            if subject is None or not _perturbable(sentence[verb.end() :]):
                continue
            seen.add(sentence)
            found.append(Statement(index, sentence, subject, verb.group(1)))
    return found


def _perturbable(text: str) -> bool:
    """Has a figure FigurePerturber changes (single digits like "SOC 2" stay as they are)."""
    return any(
        "." in m.group(0) or float(m.group(0).replace(",", "")) >= 10 for m in FIGURE.finditer(text)
    )


class FigurePerturber:
    """Replaces every figure of a text by another, the same one each time it recurs (so a
    passage and the answer copying it stay consistent): amounts scaled by 0.55-0.9 or 1.1-1.45
    with the same decimals and thousands separators, percentages kept below 100, years shifted
    by one offset, days of a month redrawn; single digits (counts, ordinals) stay."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.year_shift = rng.choice([-1, 1]) * rng.randint(3, 9)
        self.mapping: dict[tuple[str, str], str] = {}

    def _new(self, token: str, kind: str, percent: bool) -> str:
        whole, _, decimals = token.partition(".")
        value = float(token.replace(",", ""))
        if kind == "year":
            return str(int(value) + self.year_shift)
        if kind == "day":
            return str(self.rng.randint(1, 28))
        for _ in range(20):
            low = self.rng.random() < 0.5 or (percent and value * 1.1 >= 100)
            factor = self.rng.uniform(0.55, 0.9) if low else self.rng.uniform(1.1, 1.45)
            new = round(value * factor, len(decimals))
            if percent and new >= 100:
                continue
            text = f"{new:,.{len(decimals)}f}" if "," in whole else f"{new:.{len(decimals)}f}"
            if text != token and new > 0:
                return text
        return token

    def __call__(self, text: str) -> str:
        def replace(match: re.Match) -> str:
            token = match.group(0)
            value = float(token.replace(",", ""))
            before = text[: match.start()]
            after = text[match.end() : match.end() + 2]
            if "," not in token and "." not in token and 1900 <= value <= 2100:
                kind = "year"
            elif _MONTH.search(before) and value <= 31 and "." not in token:
                kind = "day"
            elif value < 10 and "." not in token:
                return token
            else:
                kind = "amount"
            key = (token, kind)
            if key not in self.mapping:
                self.mapping[key] = self._new(token, kind, after.lstrip().startswith("%"))
            return self.mapping[key]

        return FIGURE.sub(replace, text)


def voice_sentences(reply: str) -> tuple[str | None, str | None]:
    """(opening, closing) of a style reply of several sentences that states no figure (no
    digit): its first sentence when short and opening like a reply ("We ...", "Yes, ..."), its
    last when short; None where there is none. What the voice adds around a statement without
    adding a number: training wraps grounded examples in them (`voice_lines`), and the app
    evaluation's voice anchor appends the closings (hybrid/evaluation/voice.py)."""
    parts = [] if any(ch.isdigit() for ch in reply) else sentences(reply)
    if len(parts) < 2:
        return None, None
    opening = parts[0] if len(parts[0]) <= 140 and parts[0].split()[0] in _OPENING_WORDS else None
    return opening, parts[-1] if len(parts[-1]) <= 160 else None


def voice_lines(examples: Iterable[Example]) -> tuple[list[str], list[str]]:
    """(openings, closings): `voice_sentences` of every trained assistant turn."""
    found = [
        voice_sentences(m.content)
        for example in examples
        for m in example.messages
        if m.role == "assistant" and m.weight
    ]
    return [o for o, _ in found if o], [c for _, c in found if c]


def normalise_question(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def load_questions(paths: Sequence[Path]) -> list[str]:
    """The questions of labelled JSONL files (evaluation sets to keep out of training), read as
    `hybrid eval app` reads them.

    Raises:
        ConfigError: a missing or empty file, or a bad line (named `file:line`).
    """
    try:
        return [case.question for path in paths for case in read_cases(path)]
    except UsageError as exc:
        raise ConfigError(f"context.holdout: {exc}") from None


def _with_citation(statement: str, number: int) -> str:
    body = statement.rstrip()
    end = body[-1] if body[-1] in ".!?" else ""
    return f"{body[: len(body) - len(end)]} [{number}]{end or '.'}"


def fits(budget: PromptBudget | None, messages: list[dict]) -> bool:
    return budget is None or budget.count(messages) <= budget.max_model_len


def app_messages(spec: AppSpec, shown: Sequence[Passage], question: str, answer: str) -> list[dict]:
    """One training example's three messages as the app lays them out: its system prompt with
    `shown` (already numbered), the question, the answer."""
    return [
        {"role": "system", "content": system_prompt(spec, shown)},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]


def _window(passage_text: str, statement: str, width: int) -> str:
    """The statement with up to `width` sentences on each side, from its passage; a field's
    line (a table row, a list item) with up to 2 x `width` lines on each side."""
    lines = [line for line in passage_text.splitlines() if line.strip()]
    at_line = next((i for i, line in enumerate(lines) if line == statement), None)
    if at_line is not None:
        return "\n".join(lines[max(0, at_line - 2 * width) : at_line + 2 * width + 1])
    parts = sentences(passage_text)
    at = next((i for i, s in enumerate(parts) if statement in s), 0)
    return " ".join(parts[max(0, at - width) : at + width + 1])


def grounded_examples(
    passages: Sequence[Passage],
    spec: AppSpec,
    style: Sequence[Example] = (),
    *,
    count: int,
    seed: int = 0,
    distractors: int | None = None,
    exclude: Sequence[str] = (),
    budget: PromptBudget | None = None,
    served: Callable[[Sequence[int]], Sequence[str]] | None = None,
    opening_share: float = 0.0,
) -> list[Example]:
    """`count` chat examples: the app's system prompt with one figure passage among
    `distractors` other passages (default: the app's top_k minus one), a templated question
    about one of its statements, and an answer copying that statement with its [n] citation in
    the voice of `style`'s replies. All figures perturbed per example. Questions equal (after
    normalising) to one in `exclude` are never produced. With `budget` (base tokenizer and the
    training max_length), distractors are dropped and then the fact passage narrowed to the
    sentences around its statement until the example fits. `served` gives the text the app
    shows for passages (by index), e.g. each chunk widened with its neighbours as a query with
    the app's `context_chars` shows it; statements are found in `passages` and shown in it.
    `opening_share` of the answers open with a sentence of the voice before the fact (0: the
    fact comes first, then a closing sentence). Fewer than `count` come back only when the
    passages hold no usable statement."""
    statements = figure_statements(passages)
    if not statements or count <= 0:
        return []
    rng = random.Random(seed)
    held_out = {normalise_question(q) for q in exclude}
    openings, closings = voice_lines(style)
    n_distractors = max(0, spec.retrieval.top_k - 1) if distractors is None else distractors
    with_figures = [i for i, p in enumerate(passages) if FIGURE.search(p.text)]
    text_of = shown_texts(passages, served)
    out: list[Example] = []
    queue: list[Statement] = []
    for _ in range(count * 5):
        if len(out) >= count:
            break
        if not queue:  # every statement once per round, in a fresh order
            queue = rng.sample(statements, len(statements))
        statement = queue.pop()
        example = _one_example(
            statement,
            passages,
            spec,
            rng,
            with_figures,
            n_distractors,
            openings,
            closings,
            budget,
            text_of,
            opening_share,
        )
        if example is None or normalise_question(example[1]["content"]) in held_out:
            continue
        out.append(
            Example(
                origin=f"grounded:{passages[statement.passage].label}#{len(out)}",
                messages=tuple(Message(m["role"], m["content"]) for m in example),
            )
        )
    return out


def shown_texts(
    passages: Sequence[Passage], served: Callable[[Sequence[int]], Sequence[str]] | None
) -> Callable[[int], str]:
    """Passage index -> the text an example shows for it: `served`'s (asked once per index,
    with the statement's passage and its candidate distractors together) or the passage's own."""
    if served is None:
        return lambda i: passages[i].text
    cache: dict[int, str] = {}

    def text_of(i: int) -> str:
        if i not in cache:
            (cache[i],) = served([i])
            if passages[i].text.strip() not in cache[i]:  # widening must keep the chunk whole
                cache[i] = passages[i].text
        return cache[i]

    return text_of


def question_about(statement: Statement, subject: str, rng: random.Random) -> str:
    """A templated question about `statement`, naming its (perturbed) `subject`."""
    if statement.anchor:  # a field: about what it belongs to when that is known
        entity, heading = statement.entity, statement.heading
        if entity:
            templates = FIELD_TEMPLATES
        else:
            templates = SECTION_TEMPLATES if heading else ("What is {subject}?",)
        question = rng.choice(templates).format(
            subject=subject,
            entity=entity,
            Entity=entity[:1].upper() + entity[1:],
            heading=heading[:1].lower() + heading[1:] if not heading.isupper() else heading,
            Heading=heading,
        )
        return question[0].upper() + question[1:]
    if statement.verb in _CHANGE_VERBS:
        template = rng.choice(CHANGE_TEMPLATES)
    elif statement.verb in {"was", "were", "is", "are"}:
        template = rng.choice(STATE_TEMPLATES)
    else:
        template = rng.choice(GENERIC_TEMPLATES)
    be = "were" if statement.verb in {"were", "are"} else "was"
    question = template.format(subject=subject, be=be)
    return question[0].upper() + question[1:]


def _one_example(
    statement: Statement,
    passages: Sequence[Passage],
    spec: AppSpec,
    rng: random.Random,
    with_figures: list[int],
    n_distractors: int,
    openings: list[str],
    closings: list[str],
    budget: PromptBudget | None,
    text_of: Callable[[int], str],
    opening_share: float,
) -> list[dict] | None:
    """One example's messages, or None when even the statement alone does not fit."""
    perturb = FigurePerturber(rng)
    question = question_about(statement, perturb(statement.subject), rng)
    fact = statement.passage
    pool = [i for i in with_figures if i != fact] or [i for i in range(len(passages)) if i != fact]
    # a distractor never shows the statement too (neighbouring chunks widen into each other)
    said = statement.anchor or statement.text
    candidates = rng.sample(pool, min(n_distractors + 3, len(pool)))
    order = [fact, *[i for i in candidates if said not in text_of(i)][:n_distractors]]
    rng.shuffle(order)
    opening = rng.choice(openings) if openings and rng.random() < opening_share else None
    closing = rng.choice(closings) if closings else None
    copied = perturb(statement.text)
    texts = {i: perturb(text_of(i)) for i in order}
    # Each passage's anchor sentence: the statement in the fact passage, a figure elsewhere.
    anchors = {fact: statement.anchor or statement.text}
    for i in order:
        if i != fact:
            parts = sentences(passages[i].text) or [passages[i].text]
            anchors[i] = rng.choice([p for p in parts if FIGURE.search(p)] or parts)
    # Layouts from the served one (whole passages) to the sentences around each anchor, then
    # the fact passage alone: distractors stay as long as any width fits.
    layouts = [(order, None), (order, 2), (order, 1), ([fact], 2), ([fact], 1), ([fact], 0)]
    for shown_order, width in layouts:
        window_texts = dict(texts)
        if width is not None:
            for i in shown_order:
                window_texts[i] = perturb(_window(text_of(i), anchors[i], width))
        shown = [
            dataclasses.replace(passages[i], number=n, text=window_texts[i])
            for n, i in enumerate(shown_order, start=1)
        ]
        answer = [opening, _with_citation(copied, shown_order.index(fact) + 1), closing]
        messages = app_messages(spec, shown, question, " ".join(a for a in answer if a))
        if fits(budget, messages):
            return messages
    return None


def knowledge_base_passages(knowledge_base, chunks: Sequence | None = None) -> list[Passage]:
    """Every chunk of a knowledge base as a Passage, numbered in a stable order (by chunk id).
    `chunks`: those of `sorted_chunks`, when the caller read them already."""
    chunks = sorted_chunks(knowledge_base) if chunks is None else chunks
    return [Passage.of(i, chunk.text, chunk.citation) for i, chunk in enumerate(chunks, start=1)]


def sorted_chunks(knowledge_base) -> list:
    """The knowledge base's chunks in `knowledge_base_passages`' order (one read of them all)."""
    return sorted(knowledge_base.chunks(), key=lambda chunk: chunk.id)


def served_texts(
    knowledge_base, context_chars: int, chunks: Sequence | None = None
) -> Callable[[Sequence[int]], list[str]]:
    """For `grounded_examples(served=...)`: list indices of `knowledge_base_passages` -> each
    chunk's text as the app shows it, widened to `context_chars` with its neighbours
    (`KnowledgeBase.in_context`; read on demand, so a large knowledge base costs only the
    chunks the examples use). `chunks` as in `knowledge_base_passages`."""
    chunks = sorted_chunks(knowledge_base) if chunks is None else chunks

    def served(indices: Sequence[int]) -> list[str]:
        wide = knowledge_base.in_context([chunks[i] for i in indices], context_chars)
        return [chunk.text.strip() for chunk in wide]

    return served
