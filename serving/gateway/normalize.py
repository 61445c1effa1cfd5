"""Engine answers reshaped to OpenAI's published OpenAPI schema, streamed or not.

vLLM 0.32 sends `null` where the schema has an optional array or object (the field must then
be absent) and integer error codes where the schema has a string. The official Python SDK
tolerates both; strictly typed clients (generated from the schema: Java, Go, TypeScript with
zod) do not. Measured on vLLM 0.32 (ENGINE-NOTES.md): message `annotations` and
`function_call`, `usage.completion_tokens_details`, `usage.prompt_tokens_details`, error
`code`. Fields that OpenAI declares nullable (`refusal`, `logprobs`, `service_tier`) stay.
"""

from __future__ import annotations

ABSENT_NOT_NULL_MESSAGE = ("annotations", "function_call", "tool_calls", "audio")
"""Optional (not nullable) fields of a chat message and of a stream delta."""
ABSENT_NOT_NULL_USAGE = ("completion_tokens_details", "prompt_tokens_details")
ABSENT_NOT_NULL_TOP = ("system_fingerprint",)


def _drop_nulls(mapping: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in mapping and mapping[key] is None:
            del mapping[key]


def normalize_error(body: dict) -> dict:
    """`{"error": {...}}` with a string (or null) `code`, as OpenAI's ErrorResponse has it."""
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        if code is not None and not isinstance(code, str):
            error["code"] = str(code)
        error.setdefault("param", None)
        error.setdefault("code", None)
    return body


def normalize_answer(answer: dict) -> dict:
    """A chat completion, text completion or one of their stream chunks, fixed in place (and
    returned): nulls removed where OpenAI's schema wants the field absent."""
    if "error" in answer:
        return normalize_error(answer)
    _drop_nulls(answer, ABSENT_NOT_NULL_TOP)
    usage = answer.get("usage")
    if isinstance(usage, dict):
        _drop_nulls(usage, ABSENT_NOT_NULL_USAGE)
    for choice in answer.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        for key in ("message", "delta"):
            part = choice.get(key)
            if isinstance(part, dict):
                _drop_nulls(part, ABSENT_NOT_NULL_MESSAGE)
        message = choice.get("message")
        if isinstance(message, dict):
            message.setdefault("refusal", None)  # required (nullable) in a chat message
    return answer
