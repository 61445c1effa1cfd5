"""HTML: visible text only (scripts, styles and markup dropped), one paragraph per block element
(blank lines between them), and each table row as one line that carries its column headers
("Code: E2 | What it means: ..."), so a question about one cell finds its row."""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag

from retrieval.loaders.registry import Page, register_loader
from retrieval.loaders.text import read_utf8

_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_BLOCKS = [
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "title", "ul",
]  # fmt: skip


def _cells(row: Tag) -> list[str]:
    return [" ".join(c.get_text(" ").split()) for c in row.find_all(["th", "td"])]


def table_rows(table: Tag) -> list[str]:
    """One line per body row, each cell prefixed by its column header when the table has one."""
    rows = [r for r in table.find_all("tr") if r.find_parent("table") is table]
    headers: list[str] = []
    if rows and all(c.name == "th" for c in rows[0].find_all(["th", "td"])):
        headers, rows = _cells(rows[0]), rows[1:]
    lines = []
    for row in rows:
        cells = _cells(row)
        if headers and len(headers) == len(cells):
            cells = [f"{h}: {c}" if h else c for h, c in zip(headers, cells, strict=True)]
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


@register_loader(".html", ".htm")
def load_html(path: Path) -> list[Page]:
    soup = BeautifulSoup(read_utf8(path), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    for table in reversed(soup.find_all("table")):  # innermost first
        caption = table.find("caption")
        lines = ([" ".join(caption.get_text(" ").split())] if caption else []) + table_rows(table)
        table.replace_with(NavigableString("\n\n" + "\n\n".join(lines) + "\n\n"))
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before(NavigableString("\n\n"))
        tag.insert_after(NavigableString("\n\n"))
    for br in soup.find_all("br"):
        br.replace_with(NavigableString("\n"))
    blocks = (" ".join(b.split()) for b in _BLANK_LINES.split(soup.get_text("")))
    return [Page(text="\n\n".join(b for b in blocks if b))]
