"""PDF: one Page per PDF page, numbered from 1 as printed by viewers.

Text comes from pypdf's layout mode, which keeps the vertical gaps between paragraphs as blank
lines (structure-aware chunking cuts there) and lines up table columns with runs of spaces: a
run of lines with three or more such columns is read as a table, and each body row is written as
one line carrying its column headers ("Segment: Total | 2025 revenue: $412.6 million | ...")."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pypdf import PdfReader

from retrieval.errors import DocumentLoadError
from retrieval.loaders.registry import Page, register_loader

_COLUMN_GAP = re.compile(r"\s{3,}")
_MIN_COLUMNS = 3  # two columns are as often a contents page or a label and its value
_MAX_WRAPPED_CELL = 40  # a lone short line inside a table continues the row above's first cell


def _columns(line: str) -> list[str]:
    return _COLUMN_GAP.split(line.strip())


def _table(rows: list[list[str]]) -> list[str]:
    header, body = rows[0], rows[1:]
    lines = []
    for cells in body:
        if len(cells) == len(header):
            cells = [f"{h}: {c}" for h, c in zip(header, cells, strict=True)]
        lines.append(" | ".join(cells))
    return lines


def layout_text(raw: str) -> str:
    """pypdf layout text -> paragraphs separated by blank lines, tables as header-carrying rows."""
    lines = [line.rstrip() for line in raw.splitlines()]
    out: list[str] = []
    i = 0
    while i < len(lines):
        if len(_columns(lines[i])) < _MIN_COLUMNS:
            out.append(" ".join(lines[i].split()))
            i += 1
            continue
        rows: list[list[str]] = []  # a table: lines with columns, blank lines between allowed
        while i < len(lines):
            cells = _columns(lines[i])
            if not lines[i].strip():
                i += 1
            elif len(cells) >= _MIN_COLUMNS:
                rows.append(cells)
                i += 1
            elif rows and len(lines[i].strip()) <= _MAX_WRAPPED_CELL and _next_is_row(lines, i):
                rows[-1][0] += " " + lines[i].strip()
                i += 1
            else:
                break
        for row in _table(rows) if len(rows) > 1 else [" ".join(rows[0])]:
            out += ["", row, ""]  # a paragraph per row: each is found (and cited) on its own
    text = "\n".join(out)
    return re.sub(r"\n\s*\n\s*", "\n\n", text).strip()


def _next_is_row(lines: list[str], i: int) -> bool:
    """Whether the first non-blank line after `i` is another table row."""
    for line in lines[i + 1 :]:
        if line.strip():
            return len(_columns(line)) >= _MIN_COLUMNS
    return False


@register_loader(".pdf")
def load_pdf(path: Path) -> list[Page]:
    with open(path, "rb") as fh:
        if not fh.read(1024).lstrip().startswith(b"%PDF"):
            raise DocumentLoadError(str(path), "not a PDF (no %PDF header)")
    # pypdf logs recoverable structure problems as warnings; we report failures ourselves.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        raise DocumentLoadError(str(path), "encrypted PDF; decrypt it before ingesting")
    return [
        Page(text=layout_text(page.extract_text(extraction_mode="layout") or ""), page=i)
        for i, page in enumerate(reader.pages, 1)
    ]
