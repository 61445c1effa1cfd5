"""Plain text and Markdown."""

from __future__ import annotations

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


@register_loader(".txt", ".md", ".markdown", ".rst")
def load_text(path: Path) -> list[Page]:
    return [Page(text=read_utf8(path))]
