"""Errors of the composition layer."""

from __future__ import annotations

from finetune.errors import TrainingInterrupted

__all__ = [
    "ConfigError",
    "HybridError",
    "TrainingInterrupted",
    "UsageError",
    "user_errors",
]


class HybridError(Exception):
    """Base class of errors raised by `hybrid` on purpose (shown to the user as one line)."""


class ConfigError(HybridError, ValueError):
    """A config file is missing, not YAML, or fails validation (all problems listed at once)."""


class UsageError(HybridError, ValueError):
    """Bad input named on the command line (an unknown app, a malformed input file): one line
    naming the file and line, exit code 2 like typer's own usage errors."""


def user_errors() -> tuple[type[Exception], ...]:
    """The errors every layer raises on purpose, each shown to the user as one line (imported
    on call: `import hybrid.errors` stays free of the layers)."""
    from finetune.errors import FinetuneError
    from retrieval import RetrievalError
    from serving.adapters import RegistryError
    from serving.errors import ServingError

    return (HybridError, RetrievalError, FinetuneError, ServingError, RegistryError)
