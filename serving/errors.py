"""Exceptions raised by the serving engine layer. Each message names the value, the problem and
the fix; errors that come from a vLLM server carry vLLM's own message and status as attributes.

The HTTP gateway maps these classes to status codes in one place; user mistakes (a bad adapter
folder, an unknown adapter name) are the `ValueError`/`LookupError` subclasses.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class for every error the serving layer raises on purpose."""


class EngineStartError(ServingError, RuntimeError):
    """A vLLM server could not be started, or exited / hung before it was ready."""

    def __init__(
        self, message: str, *, log_path: str | None = None, log_tail: str = "", problem: str = ""
    ):
        super().__init__(message)
        self.log_path = log_path
        self.log_tail = log_tail
        self.problem = problem or message.splitlines()[0]
        """The problem in a few words, e.g. "exited with code 1 during start-up"."""


class EngineCrashed(EngineStartError):
    """A supervised vLLM server died and the restart policy gave up on it."""


class EngineUnavailable(ServingError, ConnectionError):
    """A vLLM server cannot be reached (connection refused, timeout, not ready yet)."""

    def __init__(self, message: str, *, url: str):
        super().__init__(message)
        self.url = url


class NoHealthyEngine(EngineUnavailable):
    """No replica of an engine set is healthy, so nothing can serve the request."""


class EngineRequestError(ServingError):
    """A vLLM server answered a request with an error.

    Attributes:
        url: the engine's base URL.
        status_code: the HTTP status vLLM answered with.
        error_type: vLLM's `error.type` (e.g. "NotFoundError"), or "" when the body had none.
        engine_message: vLLM's `error.message`, verbatim.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status_code: int,
        error_type: str = "",
        engine_message: str = "",
    ):
        super().__init__(message)
        self.url = url
        self.status_code = status_code
        self.error_type = error_type
        self.engine_message = engine_message

    def __str__(self) -> str:  # LookupError subclasses would otherwise quote the message
        return self.args[0]


class InvalidAdapterName(ServingError, ValueError):
    """An adapter name the engine cannot serve under (empty, whitespace, the base model's name)."""


class AdapterLoadError(EngineRequestError, ValueError):
    """The engine refused to load an adapter folder (missing files, rank too high, bad config)."""


class AdapterAlreadyLoaded(AdapterLoadError):
    """The engine already serves an adapter under that name."""


class AdapterNotLoaded(EngineRequestError, LookupError):
    """The engine serves no adapter (or model) under that name."""
