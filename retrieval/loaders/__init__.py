"""Document loaders: one module per format, registered by file extension.

Adding a format touches one new module: write `load(path) -> list[Page]` and decorate it with
`@register_loader(".ext")`, then import the module below.
"""

from retrieval.loaders import html, pdf, text  # noqa: F401  (registers the loaders)
from retrieval.loaders.registry import (
    Page,
    available_extensions,
    check_size,
    load_document,
    register_loader,
)

__all__ = ["Page", "available_extensions", "check_size", "load_document", "register_loader"]
