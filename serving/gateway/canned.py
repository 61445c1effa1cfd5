"""Chat answers the gateway writes itself, without generating (an app's no-context message),
in the engine's response shape, streamed or not."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

from serving.engine.replicas import EngineSet
from serving.errors import ServingError
from serving.gateway.composing import PreparedChat
from serving.gateway.schemas import ChatCompletionRequest
from serving.gateway.streams import EventStream, sse

log = logging.getLogger("serving.gateway")


def canned_answer(
    requested: str, prepared: PreparedChat, request: ChatCompletionRequest, usage: dict | None
) -> dict | EventStream:
    """`prepared.fixed_answer`, valid for the request's format: where the request asks for
    structured output (`response_format` json_schema/json_object, or `tool_choice` that forces
    a call), the text is a refusal (`refusal` set, `content` null) as OpenAI answers one;
    otherwise it is the content."""
    text = prepared.fixed_answer or ""
    refuse = wants_structured_output(prepared.body)
    fields = prepared.annotate([text] * request.n) if prepared.annotate else {}
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": prepared.response_model or requested,
    }
    said = {"content": None, "refusal": text} if refuse else {"content": text}
    if not request.stream:
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "refusal": None, **said},
                "finish_reason": "stop",
                "logprobs": None,
            }
            for i in range(request.n)
        ]
        answer = {**head, "object": "chat.completion", "choices": choices}
        if usage is not None:
            answer["usage"] = usage
        if fields:
            answer[prepared.extra_key] = fields
        return answer
    wants_usage = bool(request.stream_options and request.stream_options.include_usage)
    delta = {"role": "assistant", **{k: v for k, v in said.items() if v is not None}}

    async def events() -> AsyncIterator[bytes]:
        chunk = {**head, "object": "chat.completion.chunk"}
        for i in range(request.n):
            yield sse({**chunk, "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
            yield sse({**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]})
        if fields:
            yield sse({**chunk, "choices": [], prepared.extra_key: fields})
        if wants_usage and usage is not None:
            yield sse({**chunk, "choices": [], "usage": usage})
        yield sse("[DONE]")

    return EventStream(events())


async def canned_usage(engines: EngineSet, base: str, body: dict, text: str, n: int) -> dict | None:
    """Usage of a canned answer by the engine's tokenizer: the request's messages as prompt,
    the text as completion (nothing was generated); None (no `usage`, which OpenAI's schema
    allows) when no engine can count: invented zeros would be wrong figures."""
    prompt = {"messages": body.get("messages") or []}
    if body.get("tools"):
        prompt["tools"] = body["tools"]
    try:
        client = engines.pick().client
        prompt_tokens, answer_tokens = await asyncio.gather(
            client.count_tokens(base, prompt),
            client.count_tokens(base, {"prompt": text, "add_special_tokens": False}),
        )
    except ServingError as exc:
        log.warning("no usage for a fixed answer: the engine could not count tokens: %s", exc)
        return None
    completion = answer_tokens * n
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def wants_structured_output(body: dict) -> bool:
    """Whether a chat request asks for structured output: a JSON `response_format`, or a
    `tool_choice` that forces a tool call."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        return True
    choice = body.get("tool_choice")
    return bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict))
