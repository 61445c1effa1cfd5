"""Answers checked against the app's JSON schema (`answer_schema:` in the app file).

An app whose answers a program consumes (a KPI card, an extracted record) names a JSON schema;
every generated answer is then parsed as JSON and validated against it with `jsonschema`, and
the verdict goes into the answer's `hybrid.answer_schema` field (`{"valid": false, "errors":
["value: 'n/a' is not of type 'number'"]}`) and into `/metrics`. It labels, it never blocks or
repairs: a client that needs the shape at decode time sends `response_format` with the same
schema (vLLM's structured output), and the check then says whether the engine kept it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jsonschema import exceptions, validators

MAX_ERRORS = 5
"""Errors reported per answer (the most relevant first, as jsonschema ranks them)."""


def read_schema(value: object, base: Path) -> object:
    """The schema an app file names: a path (relative to the app file's folder) to a JSON file
    is read; a mapping written in the app file is returned as it is.

    Raises:
        ValueError: the file is missing or not JSON (the message names it).
    """
    if not isinstance(value, str):
        return value
    path = (base / value).resolve()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"answer_schema file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"answer_schema file {path} is not JSON ({exc})") from None


def schema_problem(schema: dict) -> str | None:
    """Why `schema` is not a valid JSON schema (checked against its own metaschema), or None."""
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top level)"
        return f"not a valid JSON schema at {where}: {exc.message}"
    return None


@dataclass(frozen=True)
class SchemaCheck:
    valid: bool
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"valid": self.valid, "errors": list(self.errors)}


class AnswerSchema:
    """One app's schema, compiled once; `check` is called on every generated answer."""

    def __init__(self, schema: dict):
        self.schema = schema
        self._validator = validators.validator_for(schema)(schema)

    def check(self, answer: str) -> SchemaCheck:
        """Whether `answer` (the whole message content) is one JSON value that the schema
        accepts; if not, why (at most MAX_ERRORS reasons)."""
        try:
            value = json.loads(answer)
        except json.JSONDecodeError as exc:
            return SchemaCheck(False, (f"not JSON: {exc.msg} at character {exc.pos}",))
        found = sorted(self._validator.iter_errors(value), key=exceptions.relevance)
        if not found:
            return SchemaCheck(True)
        return SchemaCheck(False, tuple(_describe(e) for e in found[:MAX_ERRORS]))


def _describe(error: exceptions.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    return f"{where}: {message}"
