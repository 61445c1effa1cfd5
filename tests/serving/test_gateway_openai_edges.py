"""OpenAI API edges, fast: the reshaping of vLLM's answers to OpenAI's schema, and request
limits no stricter than OpenAI's. The same against the real vLLM: test_openai_edges_vllm.py."""

from __future__ import annotations

import pytest

from serving.gateway.errors import InvalidRequest
from serving.gateway.normalize import normalize_answer
from serving.gateway.schemas import ChatCompletionRequest, CompletionRequest, parse

# What vLLM 0.32 answers (measured, trimmed): nulls where OpenAI's schema wants absence
VLLM_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "system_fingerprint": None,
    "service_tier": None,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "hi",
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "tool_calls": [],
                "reasoning": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "total_tokens": 4,
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
    },
}


def test_nulls_the_schema_forbids_are_removed_and_nullable_ones_kept():
    answer = normalize_answer(json_copy(VLLM_CHAT))
    message = answer["choices"][0]["message"]
    assert set(message) == {"role", "content", "refusal", "tool_calls", "reasoning"}
    assert message["refusal"] is None and answer["choices"][0]["logprobs"] is None
    assert set(answer["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert "system_fingerprint" not in answer and answer["service_tier"] is None
    chunk = {"choices": [{"index": 0, "delta": {"content": "x", "function_call": None}}]}
    assert normalize_answer(chunk)["choices"][0]["delta"] == {"content": "x"}


def test_a_message_without_refusal_gets_the_required_field():
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}]}
    assert normalize_answer(answer)["choices"][0]["message"]["refusal"] is None


def test_integer_error_codes_become_strings():
    error = {"error": {"message": "bad", "type": "BadRequestError", "code": 400}}
    assert normalize_answer(error) == {
        "error": {"message": "bad", "type": "BadRequestError", "code": "400", "param": None}
    }


def test_n_up_to_openais_128():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert parse(ChatCompletionRequest, {**body, "n": 128}).n == 128
    with pytest.raises(InvalidRequest, match="'n': Input should be less than or equal to 128"):
        parse(ChatCompletionRequest, {**body, "n": 129})


@pytest.mark.parametrize("prompt", ["text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_completion_prompts_take_every_openai_form(prompt):
    assert parse(CompletionRequest, {"model": "m", "prompt": prompt}).prompt == prompt


@pytest.mark.parametrize("prompt", [[], [[]], [1, "a"], [-1], [[1], "a"]])
def test_malformed_prompts_are_400(prompt):
    with pytest.raises(InvalidRequest, match="prompt"):
        parse(CompletionRequest, {"model": "m", "prompt": prompt})


def json_copy(value):
    import json

    return json.loads(json.dumps(value))
