"""Figures as claims: each number in a text with its scaled value, its unit, what it measures,
its period and the entity it is about.

`"Revenue rose 18% to $412.6 million, from $349.7 million in 2024."` gives three claims:
18 percent, 412,600,000 USD and 349,700,000 USD; the last is bound to 2024 (its own clause),
the first two are not. `"$412.6 million"`, `"$412,600,000"` and `"$412.6m"` are the same value.
The grounding check (`hybrid.apps.grounding`) compares the claims of an answer with those of
its passages. Plain regular expressions and a Snowball stemmer, on purpose: it runs on every
answer and must explain itself.

Why one module: about 250 of its lines are the word lists (stop words, currencies, units, months,
synonyms) the claim grammar reads together; the functions themselves are small.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import Stemmer  # PyStemmer, installed with the BM25 retriever

from retrieval.names import MONTHS

MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_NUMBER = re.compile(
    r"(?<![\w.:])(?<![A-Za-z]-)(?P<cur>[$€£])?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w-]*\d)"
)
_SCALES = {
    "thousand": Decimal(10**3),
    "k": Decimal(10**3),
    "million": Decimal(10**6),
    "mn": Decimal(10**6),
    "m": Decimal(10**6),
    "billion": Decimal(10**9),
    "bn": Decimal(10**9),
    "b": Decimal(10**9),
    "trillion": Decimal(10**12),
}
_SCALE = re.compile(r"\s?(thousand|million|billion|trillion|mn|bn|[kmb])\b", re.IGNORECASE)
_CURRENCY_WORDS = {
    "dollar": "USD",
    "dollars": "USD",
    "usd": "USD",
    "euro": "EUR",
    "euros": "EUR",
    "eur": "EUR",
    "pound": "GBP",
    "pounds": "GBP",
    "gbp": "GBP",
}
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP"}
# unit word -> (unit class, factor to the class's base unit)
_UNITS: dict[str, tuple[str, Decimal]] = {}
for _names, _cls, _factor in (
    (("second", "seconds", "sec", "secs", "s"), "duration", "1"),
    (("minute", "minutes", "min", "mins"), "duration", "60"),
    (("hour", "hours", "hr", "hrs", "h"), "duration", "3600"),
    (("day", "days"), "duration", "86400"),
    (("week", "weeks", "wk", "wks"), "duration", "604800"),
    (("month", "months"), "duration", "2629800"),
    (("year", "years", "yr", "yrs"), "duration", "31557600"),
    (("ml", "millilitre", "millilitres", "milliliter", "milliliters"), "volume", "0.001"),
    (("l", "litre", "litres", "liter", "liters"), "volume", "1"),
    (("g", "gram", "grams"), "mass", "0.001"),
    (("kg", "kilogram", "kilograms", "kilo", "kilos"), "mass", "1"),
    (("mm", "millimetre", "millimetres", "millimeter", "millimeters"), "length", "0.001"),
    (("cm", "centimetre", "centimetres", "centimeter", "centimeters"), "length", "0.01"),
    (("m", "metre", "metres", "meter", "meters"), "length", "1"),
    (("km", "kilometre", "kilometres", "kilometer", "kilometers"), "length", "1000"),
    (("mile", "miles", "mi"), "length", "1609.344"),
    (("ft", "foot", "feet"), "length", "0.3048"),
    (("inch", "inches"), "length", "0.0254"),
    (("lb", "lbs"), "mass", "0.45359237"),
    (("oz", "ounce", "ounces"), "mass", "0.028349523125"),
    (("gallon", "gallons", "gal"), "volume", "3.785411784"),
    (("wh",), "energy", "1"),
    (("kwh",), "energy", "1000"),
    (("mwh",), "energy", "1000000"),
    (("gwh",), "energy", "1000000000"),
    (("mw", "megawatt", "megawatts"), "power", "1000000"),
    (("gw", "gigawatt", "gigawatts"), "power", "1000000000"),
    (("kb",), "data", "1000"),
    (("mb",), "data", "1000000"),
    (("gb",), "data", "1000000000"),
    (("tb",), "data", "1000000000000"),
    (("w", "watt", "watts"), "power", "1"),
    (("kw", "kilowatt", "kilowatts"), "power", "1000"),
    (("v", "volt", "volts"), "voltage", "1"),
    (("hz", "hertz"), "frequency", "1"),
    (("bar",), "pressure", "1"),
    (("ppm",), "ppm", "1"),
    (("degrees", "degree", "°c", "°f"), "degrees", "1"),
    (("tonnes", "tonne", "tons", "ton"), "mass", "1000"),
):
    for _name in _names:
        _UNITS.setdefault(_name, (_cls, Decimal(_factor)))
_PERCENT = re.compile(r"\s?(%|per ?cent\b|percentage points?\b|pp\b|points?\b)", re.IGNORECASE)
_UNIT_WORD = re.compile(r"[\s-]?(°[cf]|[a-z]+)\b", re.IGNORECASE)
_MONTHS = [
    *MONTHS,
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
]
_MONTH_BEFORE = re.compile(r"\b(" + "|".join(_MONTHS) + r")\.?\s*$", re.IGNORECASE)
_YEAR_VALUE = re.compile(r"^(19|20)\d\d$")
_RELATIVE_PRIOR = re.compile(
    r"\b(a year (earlier|before|ago)|the (year|period) before|(prior|previous|preceding|last) "
    r"(fiscal )?year|year[- ]earlier)\b",
    re.IGNORECASE,
)
RELATIVE_NOW = 0
"""The period a figure with no year of its own is about when the documents' year is unknown:
relative periods (0 now, -1 "a year earlier") tell a figure from its prior-year comparison
even then, and are compared only with each other (`is_relative`)."""


def is_relative(year: int) -> bool:
    """Whether a period is relative to an unknown current year (`RELATIVE_NOW`)."""
    return year <= RELATIVE_NOW


_COMPARATIVE = re.compile(
    r"^\s*(up |down |rising |falling )?(from|compared (with|to)|versus|vs\.?|against)\b",
    re.IGNORECASE,
)
_CHANGE = re.compile(
    r"\b(rose|ris(e|es|ing|en)|grew|grow(s|ing|n)?|increas\w*|fell|fall(s|ing|en)?|declin\w*|"
    r"decreas\w*|dropp?\w*|improv\w*|climb\w*|jump\w*|slipp?\w*|went|moved|chang\w*|"
    r"narrow\w*|widen\w*|reduc\w*|expand\w*|contract(ed|ing)|shr[au]nk|doubl\w*|tripl\w*|"
    r"halv\w*|rais\w*|lift\w*|boost\w*|cut(s|ting)?|trimm?\w*|lower\w*|higher)\b",
    re.IGNORECASE,
)
"""Words that make "from X to Y" a change over time (X the earlier figure), not a range
("programmable from 0 to 10 seconds")."""


def _is_change(clauses: list[str], i: int) -> bool:
    """Whether clause `i` gives an earlier figure to compare with: "compared with ...",
    "up from ...", or "from ..." after a verb of change ("rose to $412.6 million, from ...")."""
    clause = clauses[i]
    if not _COMPARATIVE.match(clause):
        return False
    if not re.match(r"\s*from\b", clause, re.IGNORECASE):
        return True  # "compared with", "versus", "up from", "against"
    if i and re.search(r"\b(up|down)\s*$", clauses[i - 1], re.IGNORECASE):
        return True  # "..., up from 1,612": the split left "up" behind
    return bool(_CHANGE.search(" ".join(clauses[: i + 1])))


_CLAUSE = re.compile(
    r"(?:;|,\s|\s[-–—]\s|\s(?=(?:up |down )?from\s)|\s(?=compared\s)|\s(?=versus\s)"
    r"|(?<=[a-z])\s(?=to\s[$£€]?\d)"
    r"|\s(?=against\s)|\s(?=while\s)|\s(?=whereas\s)|\s(?=and\s(?:the|its|our|a|an)\s)"
    r"|\s(?=\())"  # "(" opens an aside: "1,240 in 2024 (2,015 in 2023)"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9$£€])|\n+")
_DATE_COMMA = re.compile(r"\b(\d{1,2}),\s+((?:19|20)\d\d)\b")
_WORD = re.compile(r"[A-Za-z][A-Za-z'&-]*")
_CODE = re.compile(r"\b[A-Z][A-Za-z]*-(?:[A-Z0-9][A-Za-z0-9]*)(?:\s(?:Pro|Plus|Max|Mini|Lite))?\b")
_NAME = re.compile(
    r"\b[A-Z][a-z]+(?:[-'][A-Za-z]+)?(?:\s+(?:&\s+)?[A-Z][a-z]+(?:[-'][A-Za-z]+)?)+\b"
)
_TITLE = re.compile(r"^[A-Z][A-Za-z-]+(?:\s+(?:and|of|&|[A-Z][A-Za-z-]+))*\s+[A-Z][A-Za-z-]+$")
_LEADING_WORDS = {
    "The", "A", "An", "Our", "We", "In", "On", "At", "This", "That", "These", "Those", "Dear",
    "Yes", "No", "Hello", "Hi", "Thanks", "Thank", "Please", "Kind", "Best", "If", "When", "For",
    "And", "But", "So", "As", "It", "Its", "My", "Your", "Their", "His", "Her", "To", "From",
}  # fmt: skip
_SMALL_NUMBERS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip
_STOP = set(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "approximately",
        "around",
        "roughly",
        "nearly",
        "almost",
        "just",
        "per",
        "each",
        "every",
        "overall",
        "about",
        "some",
        "year",
        "years",
        "month",
        "months",
        "week",
        "weeks",
        "day",
        "days",
        "company",
        "report",
        "according",
        "annual",
        "good",
        "question",
        "great",
        "thanks",
        "thank",
        "happy",
        "help",
        "let",
        "know",
        "anything",
        "else",
        "here",
        "found",
        "short",
        "note",
        "please",
        "sure",
        "may",
        "might",
        "also",
        "well",
        *_SMALL_NUMBERS[1:11],  # one .. ten
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "last",
        "next",
        "new",
        "record",
        "value",
        "figure",
        "figures",
        "number",
        "numbers",
        "amount",
        "amounts",
        "level",
        "reached",
        "came",
        "stood",
        "hit",
        "made",
        "brought",
        "got",
        "million",
        "billion",
        "thousand",
        "percent",
        "cent",
        "point",
        "points",
        "rose",
        "rise",
        "risen",
        "grew",
        "grow",
        "grown",
        "growth",
        "increase",
        "increased",
        "increasing",
        "fell",
        "fall",
        "fallen",
        "decline",
        "declined",
        "decrease",
        "decreased",
        "improved",
        "improve",
        "widened",
        "narrowed",
        "reaching",
        "climbed",
        "climb",
        "dropped",
        "drop",
        "went",
        "go",
        "compared",
        "against",
        "versus",
        "like",
        "dollars",
        "dollar",
        "euros",
        "euro",
        "pounds",
        "pound",
    ]
)
GENERIC = frozenset(_STOP)
_SYNONYMS = {
    "sales": "revenue",
    "turnover": "revenue",
    "revenues": "revenue",
    "profit": "income",
    "profits": "income",
    "earnings": "income",
    "staff": "headcount",
    "employees": "headcount",
    "employee": "headcount",
    "people": "headcount",
    "colleagues": "headcount",
    "workforce": "headcount",
    "employed": "headcount",
    "costs": "price",
    "cost": "price",
    "priced": "price",
    "prices": "price",
    "sells": "price",
    "sold": "price",
    "retails": "price",
}


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


@lru_cache(maxsize=8192)
def _stem(word: str) -> str:
    word = word.lower().strip("'-&")
    word = _SYNONYMS.get(word, word)
    return _stemmer().stemWord(word)


def keywords(text: str) -> frozenset[str]:
    """Stems of the content words of `text` (no stop words, units, months or figures)."""
    out = set()
    for word in _WORD.findall(text):
        lowered = word.lower()
        if len(lowered) < 3 or lowered in GENERIC or lowered in _UNITS or lowered in _MONTHS:
            continue
        out.add(_stem(lowered))
    return frozenset(out)


def names_in(text: str) -> set[str]:
    """Multi-word proper names ("Margaret Okafor", "Kettle Classic"), without leading words
    such as "The" or "Dear"."""
    names = set()
    for match in _NAME.findall(text):
        words = match.split()
        while words and words[0] in _LEADING_WORDS:
            words = words[1:]
        if len(words) >= 2:
            names.add(" ".join(words))
    return names


def entities_in(text: str) -> frozenset[str]:
    """Entity keys: product codes ("bb-200", "amr-600", "k-classic") and multi-word names,
    lower-cased; a name that holds a code counts as the code."""
    found = {m.split()[0].lower() for m in _CODE.findall(text)}
    for name in names_in(_CODE.sub(" ", text)):
        found.add(name.lower())
    return frozenset(found)


def canonical(number: str) -> str | None:
    try:
        value = Decimal(number.replace(",", ""))
    except InvalidOperation:
        return None
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class Claim:
    figure: str
    """The figure as written ("$412.6 million", "2 months")."""
    number: str
    """The bare number, canonical ("412.6")."""
    value: Decimal
    """In the unit's base (412600000 for $412.6 million, 5184000 s for 2 months)."""
    tolerance: Decimal
    """Half the last written digit, in the same base: what rounding may hide."""
    magnitude: Decimal
    """The number with its scale, without the unit (412600000 for $412.6 million, 2 for
    2 months)."""
    unit: str
    """USD/EUR/GBP, percent, points, duration, volume, ..., year, date:<month>, count."""
    clause: frozenset[str]
    """Keywords of the figure's own clause."""
    sentence: frozenset[str]
    """Keywords of the whole sentence and the section heading above it."""
    periods: frozenset[int]
    """Years the figure is about: from its clause, else from its sentence."""
    foreign_periods: frozenset[int] = field(default_factory=frozenset)
    """Years of the sentence that belong to other figures' clauses."""
    entities: frozenset[str] = field(default_factory=frozenset)
    """Entities the figure is about: its sentence's, else its section's or document's."""
    entities_from: str = "document"
    """Where `entities` come from: "sentence", "section" (its heading) or "document"."""
    noun: str = ""
    """For a count, the stem of the word after it ("robot" in "6,420 robots")."""

    @property
    def weak(self) -> bool:
        """A single-digit count ("3 steps", "2 shots"): a figure only when the passages count
        the same thing."""
        return self.unit == "count" and len(self.number) == 1

    def same_quantity(self, other: Claim) -> bool:
        """The same value in the same unit; a figure written without a unit ("412.6 million",
        "41.3") is the same as one with a unit and that number."""
        if self.unit == "count" and other.unit != "count":
            return abs(self.magnitude - other.magnitude) <= self.tolerance
        if self.unit != other.unit:
            return False
        slack = max(self.tolerance, Decimal(0))
        return abs(self.value - other.value) <= slack + abs(other.value) * Decimal("1e-9")


def _unit_after(text: str, end: int, number: str) -> tuple[str, Decimal, int]:
    """(unit class, factor, end of the unit) for the words after a number."""
    percent = _PERCENT.match(text, end)
    if percent:
        word = percent.group(1).lower()
        unit = "points" if "point" in word or word == "pp" else "percent"
        return unit, Decimal(1), percent.end()
    match = _UNIT_WORD.match(text, end)
    if match:
        word = match.group(1).lower()
        if word in _CURRENCY_WORDS:
            return _CURRENCY_WORDS[word], Decimal(1), match.end()
        if word in _UNITS:
            cls, factor = _UNITS[word]
            return cls, factor, match.end()
    return "count", Decimal(1), end


_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_SMALL_NUMBERS)} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "ninety": "90",
    "hundred": "100",
}
_WORDED = re.compile(
    r"\b(" + "|".join(_NUMBER_WORDS) + r")(?=[\s-]+(?:(?:business|working|calendar|full)\s)?"
    r"(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?|percent|per cent|million|billion"
    r"|thousand|litres?|liters?|ml|kg|grams?|cm|mm|bar|watts?)\b)",
    re.IGNORECASE,
)


def digits_for_words(text: str) -> str:
    """ "two months" -> "2 months": a number word is a figure when a unit follows it."""
    return _WORDED.sub(lambda m: _NUMBER_WORDS[m.group(1).lower()], text)


def _split_sentences(text: str) -> list[tuple[str, str]]:
    """(heading, sentence) pairs; headings are markdown `#` lines, upper-case lines, short
    lines without a full stop and table rows' labels."""
    text = MARKER.sub(" ", text.replace("**", "").replace("__", ""))
    text = digits_for_words(text)
    text = _DATE_COMMA.sub(r"\1 \2", text)
    out: list[tuple[str, str]] = []
    heading = ""
    header_cells: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            joined = " ".join(paragraph)
            out.extend((heading, s.strip()) for s in _SENTENCE.split(joined) if s and s.strip())
            paragraph.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("|"):
            flush()
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue
            if not header_cells or not any(_NUMBER.search(c) for c in cells[1:]):
                header_cells = cells
                continue
            for name, cell in zip(header_cells[1:], cells[1:], strict=False):
                out.append((heading, f"{cells[0]} {name}: {cell}"))
            continue
        header_cells = []
        bare = line.lstrip("#").strip()
        is_heading = line.startswith("#") or (
            len(bare) < 60 and not re.search(r"[.!?:;,]$", bare) and not _NUMBER.search(bare)
        )
        if is_heading and not line.startswith(("-", "*")):
            flush()
            heading = bare
            continue
        if re.match(r"^([-*•]|\d+[.)]|[a-z]\))\s", line):
            flush()
            line = re.sub(r"^([-*•]|\d+[.)]|[a-z]\))\s+", "", line)
            out.extend((heading, s.strip()) for s in _SENTENCE.split(line) if s.strip())
            continue
        paragraph.append(line)
    flush()
    return out


@dataclass(frozen=True)
class _Raw:
    figure: str
    number: str
    value: Decimal
    tolerance: Decimal
    unit: str
    clause_index: int
    noun: str = ""
    magnitude: Decimal = Decimal(0)
    start: int = 0


_FILLER = re.compile(
    r"\s(?:business|working|calendar|full|more|extra|additional|consecutive|whole|straight)\b",
    re.IGNORECASE,
)
_TIME = re.compile(r"(?::(\d\d))?\s?([ap])\.?m\b\.?", re.IGNORECASE)
_RANGE = re.compile(r"\s?(?:to|-|–|and|or)\s?$")


def _figures(clause: str, index: int) -> list[_Raw]:
    found: list[tuple[_Raw, int, int]] = []
    for match in _NUMBER.finditer(clause):
        number = match.group("num")
        canon = canonical(number)
        if canon is None:
            continue
        decimals = len(number.split(".")[1]) if "." in number else 0
        step = Decimal(1).scaleb(-decimals) / 2
        value = Decimal(canon)
        end = match.end()
        time = None if match.group("cur") else _TIME.match(clause, end)
        if time and value < 24:  # 9 a.m., 8:30 pm, 8.30 am: minutes of the day
            hours, minutes = ([*number.split("."), "0"])[:2] if "." in number else (number, "0")
            minutes = time.group(1) or minutes
            pm = time.group(2).lower() == "p" and int(hours) != 12
            total = (int(hours) + (12 if pm else 0)) * 60 + int(minutes)
            raw = _Raw(clause[match.start() : time.end()].strip(), canon, Decimal(total),
                       Decimal(0), "time", index, magnitude=value)  # fmt: skip
            found.append((raw, match.start(), time.end()))
            continue
        scale = Decimal(1)
        scaled = _SCALE.match(clause, end)
        if scaled and (match.group("cur") or scaled.group(1).lower() not in "kmb"):
            scale = _SCALES[scaled.group(1).lower()]
            end = scaled.end()
        if match.group("cur"):
            unit = _SYMBOLS[match.group("cur")]
            factor = Decimal(1)
            after = _UNIT_WORD.match(clause, end)
            if after and after.group(1).lower() in _CURRENCY_WORDS:
                end = after.end()
        else:
            unit, factor, end = _unit_after(clause, end, number)
            filler = _FILLER.match(clause, end) if unit == "count" else None
            if filler:
                unit, factor, unit_end = _unit_after(clause, filler.end(), number)
                end = unit_end if unit != "count" else end
            if unit == "count":
                month = _MONTH_BEFORE.search(clause[: match.start()])
                if month:
                    unit = "date:" + month.group(1)[:3].lower()
                elif _YEAR_VALUE.match(canon) and scale == 1 and "," not in number:
                    unit = "year"
        factor = factor * scale
        raw = _Raw(clause[match.start() : end].strip(), canon, value * factor, step * factor,
                   unit, index, magnitude=value * scale)  # fmt: skip
        found.append((raw, match.start(), end))
    out: list[_Raw] = []
    for i, (raw, start, end) in enumerate(found):
        nxt = found[i + 1] if i + 1 < len(found) else None
        if raw.unit == "count" and nxt and nxt[0].unit != "count":
            between = clause[end : nxt[1]]
            if _RANGE.match(between) or between.strip() in ("to", "-", "–", "and", "or"):
                size = Decimal(nxt[0].number) or Decimal(1)
                factor, scale = nxt[0].value / size, nxt[0].magnitude / size
                raw = _Raw(raw.figure, raw.number, Decimal(raw.number) * factor,
                           raw.tolerance * factor, nxt[0].unit, index,
                           magnitude=Decimal(raw.number) * scale)  # fmt: skip
        if raw.unit == "count":
            noun = _UNIT_WORD.match(clause, end)
            raw = replace(raw, noun=_stem(noun.group(1)) if noun else "")
        out.append(replace(raw, start=start))
    return out


def _years(raw: list[_Raw]) -> set[int]:
    return {int(r.number) for r in raw if r.unit == "year"}


def heading_entities(heading: str) -> frozenset[str]:
    """Entities of a section heading: its codes and names, and the heading itself when it is a
    title-case name of two or more words ("Services and Software", "Industrial Arms")."""
    found = set(entities_in(heading))
    if _TITLE.match(heading.strip()) and len(heading.split()) <= 5:
        found.add(heading.strip().lower())
    return frozenset(found)


_AND = re.compile(r"\s(?=and\s)")


def _clauses(sentence: str) -> list[str]:
    """A sentence's clauses: split where `_CLAUSE` says, and at an "and" with a figure on each
    side ("$92.4 million and operating expenses were $71.8 million")."""
    out: list[str] = []
    for piece in _CLAUSE.split(sentence):
        if not piece or not piece.strip():
            continue
        start = 0
        for cut in _AND.finditer(piece):
            head, rest = piece[start : cut.start()], piece[cut.start() :]
            if _NUMBER.search(head) and _NUMBER.search(rest):
                out.append(head)
                start = cut.start()
        out.append(piece[start:])
    return out


def extract_claims(
    text: str,
    *,
    scope: Iterable[str] = (),
    current_year: int | None = None,
    find_entities: Callable[[str], frozenset[str]] = entities_in,
) -> list[Claim]:
    """The claims of `text`.

    Args:
        scope: entity keys the text as a whole is about (its file name or title).
        current_year: the year a figure with no year of its own is about (None: unknown, and
            such figures get the relative period `RELATIVE_NOW`, or one before it when the
            text marks them as a year earlier).
        find_entities: the entity keys a sentence names.
    """
    scope_entities = frozenset(scope)
    now = current_year or RELATIVE_NOW
    claims: list[Claim] = []
    for heading, sentence in _split_sentences(text):
        clauses = _clauses(sentence)
        raws = [_figures(c, i) for i, c in enumerate(clauses)]
        entities = find_entities(sentence)
        section = heading_entities(heading) if heading else frozenset()
        sentence_words = keywords(sentence) | keywords(heading)
        # a year (or "a year earlier") belongs to the nearest other figure of its clause; in a
        # clause with no other figure ("In 2025, ...") to the sentence's figures without one
        owned: dict[int, set[int]] = {}
        free: set[int] = set()
        all_years: set[int] = set()
        for i, clause_raw in enumerate(raws):
            others = [r for r in clause_raw if r.unit != "year"]
            marks = [(r.start, int(r.number)) for r in clause_raw if r.unit == "year"]
            if others:  # "which did not exist a year ago" dates nothing
                marks += [(m.start(), now - 1) for m in _RELATIVE_PRIOR.finditer(clauses[i])]
            for position, year in marks:
                all_years.add(year)
                if not others:
                    free.add(year)
                    continue
                nearest = min(others, key=lambda r, at=position: abs(r.start - at))
                owned.setdefault(id(nearest), set()).add(year)
        words: list[frozenset[str]] = []
        for i, clause in enumerate(clauses):
            own_words = keywords(clause)
            if i and (_COMPARATIVE.match(clause) or re.match(r"\s*(to\s|\()", clause)):
                # "..., from $349.7 million", "... (2,015 in 2023)": the subject before it
                own_words |= words[-1]
            words.append(own_words)
        clause_entities = [
            find_entities(c) if raws[i] else frozenset() for i, c in enumerate(clauses)
        ]
        for i, clause_raw in enumerate(raws):
            clause_words = words[i]
            for raw in clause_raw:
                itself = {int(raw.number)} if raw.unit == "year" else set()
                own = owned.get(id(raw), set()) or (free - itself)
                periods = frozenset(own)
                if not periods:
                    # "from 8.8% to 11.2%": the figure before "to" is the earlier one
                    comparative = (
                        _is_change(clauses, i)
                        and raw.figure in re.split(r"\sto\s", clauses[i], maxsplit=1)[0]
                    )
                    periods = frozenset({now - 1 if comparative else now})
                if clause_entities[i]:  # "...; the BB-200 Pro carries a 3-year warranty"
                    about, source = clause_entities[i], "sentence"
                elif entities:
                    about, source = entities, "sentence"
                elif section:
                    about, source = section, "section"
                else:
                    about, source = scope_entities, "document"
                claims.append(
                    Claim(
                        figure=raw.figure,
                        number=raw.number,
                        value=raw.value,
                        tolerance=raw.tolerance,
                        magnitude=raw.magnitude,
                        unit=raw.unit,
                        clause=clause_words,
                        sentence=sentence_words,
                        periods=periods,
                        foreign_periods=frozenset(all_years - own - itself),
                        entities=frozenset(about),
                        entities_from=source,
                        noun=raw.noun,
                    )
                )
    return claims


def dominant_year(text: str) -> int | None:
    """The year a document is mostly about (at least 3 mentions and the most frequent), or None."""
    years = Counter(int(y) for y in re.findall(r"(?<![\d$.,])((?:19|20)\d\d)(?![\d%])", text))
    if not years:
        return None
    year, count = years.most_common(1)[0]
    return year if count >= 3 else None
