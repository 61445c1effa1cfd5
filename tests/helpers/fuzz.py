"""Fuzz the gateway from its own OpenAPI schema with schemathesis: every case is sent, and every
answer must be below 500, in OpenAI's error shape when it is an error, and as the schema says.
Used over the fake engine (tests/serving/test_gateway_fuzz.py) and real vLLM (..._vllm.py)."""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # pydantic's lax mode would pass `"stream": 1`; none generated
]
"""Not run: `positive_data_acceptance`, since a body that fits the schema still names a model
that may not exist (404) or breaks a rule JSON Schema cannot say (`top_logprobs` needs
`logprobs`); `response_headers_conformance` has no headers to check; the stateful checks
(`use_after_free`, ...) need links between operations, which the schema does not declare."""


def assert_openai_error(status: int, content: bytes, where: str) -> None:
    """A 4xx/5xx body must be `{"error": {"message", "type", "param", "code"}}`."""
    try:
        error = json.loads(content)["error"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError(
            f"{where}: {status} without an OpenAI error body: {content[:300]!r}"
        ) from None
    assert isinstance(error, dict) and set(error) >= {"message", "type", "param", "code"}, where
    assert isinstance(error["message"], str) and error["message"], where
    assert isinstance(error["type"], str) and error["type"], where


class Fuzzer:
    """Sends schemathesis cases and checks each answer; counts the cases and their statuses.

    Args:
        models: names swapped into valid bodies and paths, so that cases reach the engine
            instead of stopping at 404.
        callers: header sets; each case is sent with one of them (API keys, none, wrong ones).
        max_examples: cases per operation and generation mode.
        raw_examples: bodies that are not JSON at all, per operation that takes a body.
        adapter_dir: put into valid `path` fields (admin register) so some register succeed.
        max_tokens: if set, valid cases ask for at most this many tokens (unless they ask for
            more than any context holds, which the engine must refuse).
    """

    def __init__(
        self,
        models: Sequence[str],
        callers: Sequence[dict],
        *,
        max_examples: dict[GenerationMode, int],
        raw_examples: int,
        adapter_dir: str | None = None,
        max_tokens: int | None = None,
        timeout_s: float = 30,
    ):
        self.models = tuple(models)
        self.callers = tuple(callers)
        self.max_examples = max_examples
        self.raw_examples = raw_examples
        self.adapter_dir = adapter_dir
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.cases = 0
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        """(status, start of the message) of each error answer: what stopped the cases."""
        self.recent: deque[str] = deque(maxlen=4)
        self.first_server_error: list[str] = []
        """The requests up to the first 5xx: once a request kills the engine every later case
        fails too, so the case hypothesis shrinks to is not the one that did it."""

    def send(self, case, caller: dict, check_schema: bool = True) -> None:
        response = case.call(headers=caller, timeout=self.timeout_s)
        self.cases += 1
        self.statuses[response.status_code] += 1
        where = f"{case.method} {case.formatted_path} {case.body!r:.300}"
        self.recent.append(f"{where} -> {response.status_code}")
        if response.status_code >= 500 and not self.first_server_error:
            self.first_server_error = list(self.recent)
        assert response.status_code < 500, f"{where}; the first 5xx came after: " + " | ".join(
            self.first_server_error
        )
        if response.status_code >= 400:
            assert_openai_error(response.status_code, response.content, where)
            message = json.loads(response.content)["error"]["message"]
            self.errors[response.status_code, message[:60]] += 1
        if check_schema:
            case.validate_response(response, checks=CHECKS, headers=caller)

    def aim(self, case, model: str) -> None:
        """Point a valid case at names that exist and keep the rules JSON Schema cannot say, so
        that it goes past the 400s and 404s to the engine."""
        body = case.body
        if isinstance(body, dict):
            if "model" in body:
                body["model"] = model
            if "path" in body and self.adapter_dir is not None:
                body["path"] = self.adapter_dir
            if body.get("top_logprobs") is not None:
                body["logprobs"] = True
            if body.get("stream_options") is not None:
                body["stream"] = True
            if self.max_tokens is not None:
                asked = body.get("max_tokens")
                if asked is None or asked <= 100_000:
                    body["max_tokens"] = min(asked or self.max_tokens, self.max_tokens)
                body.pop("max_completion_tokens", None)  # vLLM would take it over max_tokens
        for name in ("model", "name"):
            if name in (case.path_parameters or {}):
                case.path_parameters[name] = model.partition("@")[0] if name == "name" else model

    def generated(self, operation, mode: GenerationMode) -> None:
        """Cases that fit the schema (positive) or break it (negative)."""

        @settings(
            max_examples=self.max_examples[mode],
            derandomize=True,
            database=None,
            deadline=None,
            # a 2-core machine is slow, and negative generation filters many candidates out
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(
            case=operation.as_strategy(generation_mode=mode),
            caller=st.sampled_from(self.callers),
            model=st.sampled_from((None, *self.models)),
        )
        def run(case, caller, model):
            if mode is GenerationMode.POSITIVE and model is not None:
                self.aim(case, model)
            self.send(case, caller)

        run()

    def raw(self, operation) -> None:
        """What the schema cannot say: bodies that are not JSON at all."""

        @settings(max_examples=self.raw_examples, derandomize=True, database=None, deadline=None)
        @given(
            raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
            caller=st.sampled_from(self.callers),
        )
        def run(raw, caller):
            path = {"name": self.models[0]} if "{name}" in operation.path else None
            case = operation.Case(
                body=raw, media_type="application/octet-stream", path_parameters=path
            )
            self.send(case, caller, check_schema=False)  # the schema only knows JSON bodies

        run()

    def operation(self, operation) -> None:
        """Fuzz one operation: valid cases, and for one with a body, invalid and raw ones."""
        self.generated(operation, GenerationMode.POSITIVE)
        if operation.body:  # path parameters are free strings: only bodies can be broken
            self.generated(operation, GenerationMode.NEGATIVE)
            self.raw(operation)

    def figures(self) -> dict:
        """What `record` gets: cases, statuses seen, 5xx (always 0 when the run passed)."""
        return {
            "cases": self.cases,
            "statuses": " ".join(f"{code}:{n}" for code, n in sorted(self.statuses.items())),
            "server_errors": sum(n for code, n in self.statuses.items() if code >= 500),
            "non_openai_errors": 0,  # every 4xx/5xx body was checked; one wrong fails the run
        }
