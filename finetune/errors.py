"""Exceptions raised by `finetune`. Messages name the value, the problem and the fix."""

from __future__ import annotations

from collections.abc import Sequence


class FinetuneError(Exception):
    """Base class of every error `finetune` raises on purpose."""


class DatasetError(FinetuneError, ValueError):
    """Training data cannot be read or fails validation (all problems listed at once)."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = list(problems)  # all of them; the message shows only the first few

    @classmethod
    def from_problems(cls, problems: Sequence[str], what: str, limit: int = 20) -> DatasetError:
        """One error naming every problem (the first `limit`, then "and N more"), on one line."""
        shown = list(problems[:limit])
        if len(problems) > limit:
            shown.append(f"and {len(problems) - limit} more")
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        return cls(f"{what}: {count}: " + "; ".join(shown), problems)


class BaseModelError(FinetuneError):
    """The base model cannot be found, converted or loaded."""


class TrainingError(FinetuneError):
    """Training could not start or finish; nothing half-written is left in the output folder."""


class TrainingInterrupted(TrainingError):
    """Training was stopped (Ctrl-C / SIGINT); checkpoints are kept for `resume`."""


class AdapterError(FinetuneError):
    """An adapter folder is missing, malformed or does not fit its base model."""
