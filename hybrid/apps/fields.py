"""What a client may send to an app, and what an app's answer may show: the tenant boundary.

An app's prompt holds its hidden instructions and the retrieved passages. Plain adapter and base
requests pass every field through to vLLM (the prompt is the client's own), but an app request
may carry only the fields below: OpenAI's chat fields and vLLM sampling extras that act on the
generated tokens. Fields that return the prompt (`prompt_logprobs`, `echo`, `return_token_ids`,
`return_prompt_text`, ...), change how it is built (`chat_template`, `documents`,
`continue_final_message`, `truncate_prompt_tokens`, ...) or reach into the engine
(`kv_transfer_params`, `vllm_xargs`, `priority`, ...) are refused, and so is any field not
listed (a new vLLM field must be judged before it is let through).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath

APP_OWNED = frozenset({"model", "messages"})
"""Fields of the request the app reads itself (it builds the engine's messages)."""

OPENAI_FIELDS = frozenset(
    {
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "n",
        "parallel_tool_calls",
        "presence_penalty",
        "reasoning_effort",
        "response_format",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
    }
)
GENERATION_EXTRAS = frozenset(
    {  # vLLM's: they shape or report the generated tokens only
        "allowed_token_ids",
        "bad_words",
        "ignore_eos",
        "include_reasoning",
        "include_stop_str_in_output",
        "length_penalty",
        "min_p",
        "min_tokens",
        "repetition_penalty",
        "return_tokens_as_token_ids",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "stop_token_ids",
        "structured_outputs",
        "thinking_token_budget",
        "top_k",
    }
)
APP_REQUEST_FIELDS = APP_OWNED | OPENAI_FIELDS | GENERATION_EXTRAS


def refused_fields(body: dict) -> list[str]:
    """The fields of an app request that may not reach the engine, sorted."""
    return sorted(key for key in body if key not in APP_REQUEST_FIELDS)


def public_sources(citations: Iterable[dict]) -> None:
    """Replace each citation's `source` (the document's path on the server) by its name in
    the knowledge base: the file name, with as many parent folders as it takes to tell apart
    two different documents of the same name among these citations."""
    items = [c for c in citations if isinstance(c.get("source"), str)]
    paths = {c["source"]: PurePath(c["source"]) for c in items}
    names = {}
    for source, path in paths.items():
        depth = 1
        while depth < len(path.parts) and any(
            other != source and _tail(p, depth) == _tail(path, depth) for other, p in paths.items()
        ):
            depth += 1
        names[source] = _tail(path, depth)
    for citation in items:
        citation["source"] = names[citation["source"]]


def _tail(path: PurePath, depth: int) -> str:
    return "/".join(part for part in path.parts[-depth:] if part != path.anchor)
