"""Plain text and Markdown. Markdown tables become one paragraph per body row, each cell
prefixed by its column header ("Segment: Total | 2025 revenue: $412.6 million | ..."), as the
HTML and PDF loaders write theirs."""

from __future__ import annotations

import re
from pathlib import Path

from retrieval.errors import DocumentLoadError
from retrieval.loaders.registry import Page, register_loader


def read_utf8(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise DocumentLoadError(str(path), "binary data, not text (NUL bytes found)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentLoadError(
            str(path), f"not UTF-8 text (invalid byte at offset {exc.start}); re-save it as UTF-8"
        ) from exc


_TABLE = re.compile(
    r"^\|.*\|[ \t]*\n\|[ \t:|-]*-[ \t:|-]*\|[ \t]*\n(?:\|.*\|[ \t]*(?:\n|$))*", re.M
)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _markdown_table(match: re.Match) -> str:
    header, _, *rows = match.group().rstrip("\n").split("\n")
    names = _cells(header)
    out = []
    for row in rows:
        cells = _cells(row)
        if len(cells) == len(names):
            cells = [f"{n}: {c}" if n else c for n, c in zip(names, cells, strict=True)]
        out.append(" | ".join(cells))
    return "\n\n".join(out) + "\n"


@register_loader(".txt", ".rst")
def load_text(path: Path) -> list[Page]:
    return [Page(text=read_utf8(path))]


@register_loader(".md", ".markdown")
def load_markdown(path: Path) -> list[Page]:
    return [Page(text=_TABLE.sub(_markdown_table, read_utf8(path)))]
