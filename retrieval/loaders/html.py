"""HTML: visible text only (scripts, styles and markup dropped)."""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup

from retrieval.loaders.registry import Page, register_loader
from retrieval.loaders.text import read_utf8

_BLANK_LINES = re.compile(r"\n\s*\n+")


@register_loader(".html", ".htm")
def load_html(path: Path) -> list[Page]:
    soup = BeautifulSoup(read_utf8(path), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    text = soup.get_text("\n")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return [Page(text=_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip())]
