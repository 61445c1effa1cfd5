"""PDF: one Page per PDF page, numbered from 1 as printed by viewers."""

from __future__ import annotations

import logging
from pathlib import Path

from pypdf import PdfReader

from retrieval.errors import DocumentLoadError
from retrieval.loaders.registry import Page, register_loader


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
    return [Page(text=page.extract_text() or "", page=i) for i, page in enumerate(reader.pages, 1)]
