"""The useful end of a vLLM log, for error messages: tracebacks without their frames, log
prefixes and shutdown noise removed, lines and total length capped."""

from __future__ import annotations

import re
from pathlib import Path

# "(EngineCore pid=10274) ERROR 11-24 09:55:11 [core.py:1750] " and "INFO 11-24 ... [x.py:1] "
_PROCESS_PREFIX = re.compile(r"^\((?:[\w:]+) pid=\d+\) ")
_LEVEL_PREFIX = re.compile(
    r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[[^\]]*\] ?"
)
_FRAME = re.compile(r'^\s+File "')
_CARETS = re.compile(r"^\s*[\^~\s]+$")
# Printed at interpreter exit after vLLM dies; never the cause.
_NOISE = (
    "nanobind: leaked",
    'leaked function "',
    "leaked type",
    "leaked instance",
    "... skipped remainder",
    "nanobind: this is likely caused",
    "See https://nanobind.readthedocs.io",
    "resource_tracker: There appear to be",
    "warnings.warn('resource_tracker",
    "For further information visit https://errors.pydantic.dev",
    "Traceback (most recent call last):",
    "The above exception was the direct cause",
    "During handling of the above exception",
    "warnings.warn(",
    "DeprecationWarning",  # e.g. "`python -m vllm.entrypoints.openai.api_server` is deprecated"
    "Found ulimit of",
)
_BANNER = re.compile(r"[█▄▀]")  # vLLM's start-up logo
_USAGE = re.compile(r"^\s*(usage: |\[--?\w|\[model_tag\])")  # argparse usage before its error


def clean_log_lines(lines: list[str]) -> list[str]:
    """Drop prefixes, traceback frames (and the source lines under them) and noise."""
    kept: list[str] = []
    in_frame = False
    for raw in lines:
        line = _LEVEL_PREFIX.sub("", _PROCESS_PREFIX.sub("", raw.rstrip("\r\n")))
        if _FRAME.match(line):
            in_frame = True
            continue
        if in_frame and (line.startswith("    ") or _CARETS.match(line)):
            continue  # the source line (and ^^^ markers) of the frame just skipped
        in_frame = False
        if not line.strip() or _CARETS.match(line) or _BANNER.search(line) or _USAGE.match(line):
            continue
        if any(noise in line for noise in _NOISE):
            continue
        kept.append(line.strip())
    return kept


def log_tail(
    path: str | Path | None,
    *,
    start: int = 0,
    max_lines: int = 12,
    max_line_chars: int = 600,
    max_chars: int = 4000,
) -> str:
    """The last meaningful lines of the log at `path`, read from byte offset `start` on.

    Returns "" when there is no log. Lines are cut at `max_line_chars` ("..." marks a cut) and
    the oldest lines are dropped until the tail fits `max_chars`.
    """
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(start, size - 256 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = clean_log_lines(text.splitlines())[-max_lines:]
    lines = [ln if len(ln) <= max_line_chars else ln[: max_line_chars - 3] + "..." for ln in lines]
    while lines and sum(len(ln) + 1 for ln in lines) > max_chars:
        lines.pop(0)
    return "\n".join(lines)
