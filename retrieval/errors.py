"""Exceptions raised by `retrieval`. Each message names the value, the problem and the fix."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class for every error `retrieval` raises on purpose."""


class KnowledgeBaseNotFound(RetrievalError, LookupError):
    """The named knowledge base does not exist in the store."""

    def __init__(self, name: str, existing: list[str]):
        listing = ", ".join(sorted(existing)) if existing else "none yet"
        super().__init__(
            f"unknown knowledge base '{name}' (existing: {listing}); "
            f"create it with `hybrid kb create {name}`"
        )
        self.name = name
        self.existing = existing


class FileNotInKnowledgeBase(RetrievalError, LookupError):
    """No chunk of the knowledge base comes from the named file."""

    def __init__(self, knowledge_base: str, file: str, files: list[str]):
        shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
        super().__init__(
            f"knowledge base '{knowledge_base}' has no file '{file}' "
            f"(files: {shown or 'none yet'}); give a file name or path from that list"
        )
        self.knowledge_base = knowledge_base
        self.file = file
        self.files = files


class KnowledgeBaseExists(RetrievalError):
    """A knowledge base with that name already exists."""

    def __init__(self, name: str):
        super().__init__(
            f"knowledge base '{name}' already exists; ingest into it with "
            f"`hybrid kb ingest {name} PATH` or delete it first with `hybrid kb delete {name}`"
        )
        self.name = name


class InvalidKnowledgeBaseName(RetrievalError, ValueError):
    """The name cannot be used as a knowledge base (Chroma collection) name."""


class InvalidQuery(RetrievalError, ValueError):
    """The query text or its options are unusable."""


class UnreadablePath(RetrievalError, FileNotFoundError):
    """A path given for ingestion does not exist or cannot be read."""


class StoreUnavailable(RetrievalError, ConnectionError):
    """The vector store (e.g. a Chroma server) cannot be reached."""


class EmbedderMismatch(RetrievalError):
    """The knowledge base was built with another embedder than the one configured."""


class UnknownComponent(RetrievalError, KeyError):
    """A registry (loader, embedder, store) has no entry under that name."""

    def __init__(self, kind: str, name: str, available: list[str]):
        super().__init__(f"unknown {kind} '{name}'; available: {', '.join(sorted(available))}")
        self.kind = kind
        self.name = name
        self.available = available

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DocumentLoadError(RetrievalError):
    """One document could not be read; ingestion reports it and goes on with the others."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
