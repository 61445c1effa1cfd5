"""The extension -> loader registry and the one entry point that reads a document."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import DocumentLoadError

MAX_DOCUMENT_BYTES = 200 * 1024 * 1024
"""Refuse files above this size rather than exhaust memory on a stray dump."""


@dataclass(frozen=True)
class Page:
    """Text of one page (PDF) or of a whole document (page is None)."""

    text: str
    page: int | None = None
    running_header: str = ""
    """The running header lines taken off this page (`retrieval.loaders.furniture`), as
    printed ("Page 3 of 18" keeps its number), joined by " / "; "" when none."""
    running_footer: str = ""
    """The same for the running footer lines."""


Loader = Callable[[Path], list[Page]]
_LOADERS: dict[str, Loader] = {}


def register_loader(*extensions: str) -> Callable[[Loader], Loader]:
    """Register a loader for file extensions such as ".md" (lower case, with the dot)."""

    def decorate(fn: Loader) -> Loader:
        for ext in extensions:
            _LOADERS[ext.lower()] = fn
        return fn

    return decorate


def available_extensions() -> list[str]:
    return sorted(_LOADERS)


def check_size(path: Path) -> None:
    """Refuse a file above MAX_DOCUMENT_BYTES before anything reads it.

    Raises:
        DocumentLoadError: too large, or its size cannot be read.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentLoadError(str(path), f"cannot read file ({exc.strerror})") from exc
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentLoadError(
            str(path),
            f"file is {size / 2**20:.0f} MiB, above the {MAX_DOCUMENT_BYTES // 2**20} MiB limit",
        )


def load_document(path: Path) -> list[Page]:
    """Read one document into pages of text, without the running headers and footers that
    recur on most of its pages (`retrieval.loaders.furniture`).

    Raises:
        DocumentLoadError: unsupported type, too large, unreadable, malformed or without text.
    """
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DocumentLoadError(
            str(path),
            f"unsupported file type '{path.suffix}' (supported: {', '.join(available_extensions())})",
        )
    check_size(path)
    try:
        pages = loader(path)
    except DocumentLoadError:
        raise
    except Exception as exc:  # a parser's own error type is not ours to know: report, skip
        raise DocumentLoadError(str(path), f"cannot parse ({type(exc).__name__}: {exc})") from exc
    from retrieval.loaders.furniture import strip_running_lines  # it imports Page from here

    pages = [p for p in strip_running_lines(pages) if p.text.strip()]
    if not pages:
        raise DocumentLoadError(str(path), "no extractable text (empty, or a scanned image?)")
    return pages
