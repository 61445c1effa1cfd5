"""Errors of the composition layer."""

from __future__ import annotations


class HybridError(Exception):
    """Base class of errors raised by `hybrid` on purpose (shown to the user as one line)."""


class ConfigError(HybridError, ValueError):
    """A config file is missing, not YAML, or fails validation (all problems listed at once)."""


class UsageError(HybridError, ValueError):
    """Bad input named on the command line (an unknown app, a malformed input file): one line
    naming the file and line, exit code 2 like typer's own usage errors."""
