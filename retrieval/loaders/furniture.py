"""Page furniture: running headers and footers repeated on the pages of one document.

A line that recurs, page numbers aside, among the first or the last few lines of most pages
("Northwind Robotics - 2025 Annual Report", "Page 3 of 18") is the document's furniture, not
its content. Left in, it joins every chunk that starts or ends a page, and its words outrank
the paragraph that answers a question (a small chunk holding the report title and the first
line of the outlook beat the revenue paragraph for "total revenue in 2025").

No parser installed here does this for text (pypdf extracts the whole page; pdfplumber and
PyMuPDF can crop by position only once told where the margins are; unstructured and docling
bring layout models), so it is the usual cross-page repetition rule, written out.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

from retrieval.loaders.registry import Page

ZONE_LINES = 2
"""Lines (non-blank) at the top and at the bottom of a page where furniture is looked for: a
header or footer of two lines (a title and a date, a notice and a page number) is found."""
MIN_PAGES = 3
"""Fewer pages than this cannot show that a line recurs."""
MIN_SHARE = 0.5
"""A line is furniture when it recurs in the same zone on at least this share of the pages
(half: headers that alternate between left and right pages still qualify)."""

_NUMBERS = re.compile(r"\d+")


def _key(line: str) -> str:
    """A line compared across pages: whitespace collapsed, case folded, numbers (page numbers,
    "Page 3 of 18") replaced by one mark."""
    return _NUMBERS.sub("#", " ".join(line.split()).casefold())


def _zones(lines: list[str]) -> tuple[list[int], list[int]]:
    """Indexes of the first and of the last ZONE_LINES non-blank lines."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return filled[:ZONE_LINES], filled[-ZONE_LINES:]


def running_lines(pages: list[Page]) -> tuple[set[str], set[str]]:
    """The keys (see `_key`) of the running headers and of the running footers of `pages`."""
    if len(pages) < MIN_PAGES:
        return set(), set()
    tops: Counter[str] = Counter()
    bottoms: Counter[str] = Counter()
    for page in pages:
        lines = page.text.split("\n")
        top, bottom = _zones(lines)
        tops.update({_key(lines[i]) for i in top})
        bottoms.update({_key(lines[i]) for i in bottom})
    needed = max(MIN_PAGES, MIN_SHARE * len(pages))
    return (
        {k for k, n in tops.items() if n >= needed},
        {k for k, n in bottoms.items() if n >= needed},
    )


def strip_running_lines(pages: list[Page]) -> list[Page]:
    """`pages` without their running headers and footers (see the module docstring). Only the
    top and bottom zones are touched: the same words inside a page's body stay. The lines taken
    off are kept on each page (`Page.running_header`, `Page.running_footer`): ingestion stores
    them as chunk metadata, neither embedded nor keyword-indexed."""
    headers, footers = running_lines(pages)
    if not headers and not footers:
        return pages
    out = []
    for page in pages:
        lines = page.text.split("\n")
        top, bottom = _zones(lines)
        head = [i for i in top if _key(lines[i]) in headers]
        foot = [i for i in bottom if _key(lines[i]) in footers and i not in head]
        drop = {*head, *foot}
        text = "\n".join(line for i, line in enumerate(lines) if i not in drop)
        text = re.sub(r"\n[ \t]*\n\s*", "\n\n", text).strip()
        out.append(
            dataclasses.replace(
                page,
                text=text,
                running_header=_joined(lines, head),
                running_footer=_joined(lines, foot),
            )
        )
    return out


def _joined(lines: list[str], indexes: list[int]) -> str:
    return " / ".join(" ".join(lines[i].split()) for i in indexes)
