"""Errors of the adapter registry (user mistakes: they map to 4xx)."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of registry errors."""


class AdapterRejected(RegistryError, ValueError):
    """An adapter folder cannot be served on this base model; the message says why and the fix."""


class AdapterNotFound(RegistryError, LookupError):
    """No adapter (or version) by that name; the message lists what exists."""
