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


class StubEmbedder:
    """An EmbeddingProvider as hybrid/ plugs one in (KnowledgeBaseEmbeddings, tested on the
    real embedder in test_openai_edges_vllm.py)."""

    def models(self):
        from serving.gateway import ModelInfo

        return [ModelInfo("stub-embedder", kind="embedder")]

    def owns(self, model: str) -> bool:
        return model in ("stub-embedder", "some-app")

    def dimension(self, model: str) -> int:
        return 3

    async def embed(self, model: str, texts: list[str]):
        from serving.gateway.embeddings import Embedded

        return Embedded([[len(t), 0.5, -1.0] for t in texts], sum(map(len, texts)), model)


def test_embeddings_route_float_and_base64_with_the_official_client(tmp_path, tiny_llama_dir):
    import httpx
    import openai
    from fastapi.testclient import TestClient

    from serving.adapters import AdapterRegistry, describe_base
    from serving.adapters.manager import AdapterManager
    from serving.engine import EngineClient, EngineSet, Replica
    from serving.gateway import GatewayConfig, GatewayState, create_app
    from tests.serving.fake_engine import FakeEngine

    engine = FakeEngine()
    replica = Replica(EngineClient("http://fake", transport=httpx.ASGITransport(engine.app)))
    registry = AdapterRegistry(tmp_path / "registry", describe_base(tiny_llama_dir), max_rank=16)
    manager = AdapterManager(registry, EngineSet([replica]), engine.base)
    state = GatewayState.build(GatewayConfig(), manager, embedders=[StubEmbedder()])
    with TestClient(create_app(state)) as http:
        api = openai.OpenAI(base_url="http://testserver/v1", api_key="-", http_client=http)
        packed = api.embeddings.create(model="stub-embedder", input=["ab", "abcd"])
        assert [d.embedding for d in packed.data] == [[2.0, 0.5, -1.0], [4.0, 0.5, -1.0]]
        assert packed.usage.prompt_tokens == 6 and packed.model == "stub-embedder"
        plain = http.post(
            "/v1/embeddings",
            json={"model": "some-app", "input": "abc", "encoding_format": "float"},
        ).json()
        assert plain["data"][0]["embedding"] == [3.0, 0.5, -1.0]
        for body, status, says in (
            ({"model": "base", "input": "x"}, 404, "makes no embeddings"),
            ({"model": "stub-embedder", "input": [1, 2]}, 400, "input"),
            ({"model": "stub-embedder", "input": "x", "dimensions": 2}, 400, "3-dimensional"),
        ):
            refused = http.post("/v1/embeddings", json=body)
            assert refused.status_code == status and says in refused.json()["error"]["message"]


def test_tools_on_an_engine_without_a_parser_say_how_to_enable_them():
    from serving.errors import EngineRequestError
    from serving.gateway.errors import to_answer

    said = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    answer = to_answer(
        EngineRequestError("x", url="http://e", status_code=400, engine_message=said)
    )
    assert answer.status == 400
    message = answer.body["error"]["message"]
    assert message.startswith(said) and "engine.tool_call_parser" in message
