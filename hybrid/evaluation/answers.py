"""Is a gold answer in a generated answer? Figures are compared as quantities, text as spans.

A gold form with figures in it ("$412.6 million", "41.3%", "every 2 months") matches when every
one of its quantities is stated in the answer with the same value and a compatible unit:
`$412.6 million` = `412,600,000 dollars` = `$412.6m`; `41.3%` = `41.3 percent` but not `17.5%`;
`2 months` is not `1 week` (value) and not `2 weeks` (unit). A quantity in the answer without
a unit matches a gold quantity with one (the value alone is strong evidence); a different
known unit does not. A gold form without figures matches as a normalised text span
(case, punctuation and spacing ignored). Clock times count by the hour ("9:00" is 9). A number
word before a unit is a figure ("two months" = "2 months"); a currency code before a figure is
its currency ("USD 412.6m" = "$412.6 million").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from hybrid.apps.claims import digits_for_words

_SCALES = {
    "thousand": Decimal(10) ** 3,
    "million": Decimal(10) ** 6,
    "billion": Decimal(10) ** 9,
    "trillion": Decimal(10) ** 12,
}
_SHORT_SCALES = {"k": "thousand", "m": "million", "mn": "million", "bn": "billion", "b": "billion"}
# Unit words (singular) and their canonical name; unknown words after a number are not units.
_UNITS = {
    "%": "%", "percent": "%", "per cent": "%", "pct": "%",
    "percentage point": "pp", "pp": "pp", "point": "pp",
    "$": "usd", "usd": "usd", "dollar": "usd", "us$": "usd",
    "€": "eur", "eur": "eur", "euro": "eur", "£": "gbp", "gbp": "gbp", "pound": "gbp",
    "second": "s", "sec": "s", "minute": "min", "min": "min", "hour": "h", "hr": "h",
    "day": "day", "week": "week", "month": "month", "year": "year", "yr": "year",
    "kilogram": "kg", "kg": "kg", "gram": "g", "g": "g", "tonne": "t", "ton": "t",
    "millimeter": "mm", "millimetre": "mm", "mm": "mm", "centimeter": "cm", "cm": "cm",
    "meter": "m", "metre": "m", "m": "m", "kilometer": "km", "km": "km",
    "watt": "w", "w": "w", "kilowatt": "kw", "kw": "kw", "megawatt": "mw", "mw": "mw",
    "volt": "v", "v": "v", "liter": "l", "litre": "l", "l": "l", "ml": "ml", "milliliter": "ml",
    "bar": "bar", "ppm": "ppm", "degree": "deg", "°c": "degc", "°f": "degf",
}  # fmt: skip
_CURRENCY = {
    "$": "usd",
    "us$": "usd",
    "€": "eur",
    "£": "gbp",
    "usd": "usd",
    "eur": "eur",
    "gbp": "gbp",
}
_WORD = r"[A-Za-z°%][A-Za-z]*"
_QUANTITY = re.compile(
    r"(?P<cur>US\$|[$€£]|\b(?:USD|EUR|GBP)\s)?\s?"
    r"(?P<num>(?<![\w.:])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.,:])\d+(?:\.\d+)?)"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion|mn|bn|[kmb])\b)?"
    r"(?:[\s-]?(?P<unit>%|percentage points?|per ?cent|°[CF]|" + _WORD + r"))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Quantity:
    value: Decimal
    unit: str | None
    text: str

    def matches(self, other: Quantity) -> bool:
        """Same value; units equal, or one of them has none."""
        if self.value != other.value:
            return False
        return self.unit is None or other.unit is None or self.unit == other.unit


def _unit_of(word: str | None) -> str | None:
    if not word:
        return None
    w = " ".join(word.lower().split())
    for candidate in (w, w.removesuffix("s"), w.removesuffix("es")):
        if candidate in _UNITS:
            return _UNITS[candidate]
    return None


def quantities(text: str) -> list[Quantity]:
    """The figures in `text`, each with its value scaled ($1.2 billion -> 1200000000) and its
    unit, if one follows (or a currency sign precedes)."""
    found = []
    for m in _QUANTITY.finditer(digits_for_words(text)):
        try:
            value = Decimal(m["num"].replace(",", ""))
        except InvalidOperation:
            continue
        scale = (m["scale"] or "").lower()
        if scale in _SHORT_SCALES:
            # "$412.6m" is money in millions, "12 m" is twelve metres
            scale = _SHORT_SCALES[scale] if m["cur"] else ""
            if not scale:
                unit_word = m["scale"]
                found.append(Quantity(value.normalize(), _unit_of(unit_word), m[0].strip()))
                continue
        if scale:
            value *= _SCALES[scale]
        unit = _CURRENCY.get(m["cur"].strip().lower()) if m["cur"] else None
        unit = unit or _unit_of(m["unit"])
        found.append(Quantity(value.normalize(), unit, m[0].strip()))
    return found


def normalise_text(text: str) -> str:
    """Lower case, punctuation to spaces (apostrophes dropped), single spaces."""
    text = re.sub(r"['’]", "", text.lower()).replace("&", " and ")
    return " ".join(re.sub(r"[^\w%$€£.]+|(?<!\d)\.|\.(?!\d)", " ", text).split())


def form_matches(form: str, answer: str) -> bool:
    """One accepted form of the gold answer is in `answer`."""
    gold = quantities(form)
    if gold:
        stated = quantities(answer)
        return all(any(g.matches(s) for s in stated) for g in gold)
    span = normalise_text(form)
    return bool(span) and f" {span} " in f" {normalise_text(answer)} "


def answer_correct(forms: tuple[str, ...] | list[str], answer: str) -> bool:
    """Any accepted form of the gold answer is in `answer`."""
    return any(form_matches(form, answer) for form in forms)
