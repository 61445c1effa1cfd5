"""OpenAI API edges against the real vLLM (tiny model), through the gateway with the official
openai client: tool calls (base, adapter, app), answers shaped as OpenAI's schema has them
(base, adapter, app; streamed and not), OpenAI's limits (n up to 128, token-id prompts), model
cards with real creation times, and an app's no-context answer under structured output."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from hybrid.apps.app import open_pipeline
from hybrid.apps.budget import PromptBudget
from hybrid.apps.composer import AppComposer
from hybrid.apps.embeddings import KnowledgeBaseEmbeddings
from hybrid.apps.spec import AppSpec
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineSet
from serving.gateway import GatewayConfig, GatewayMetrics, GatewayState, create_app
from tests.conftest import EXAMPLES
from tests.helpers.adapters import random_lora
from tests.helpers.gateway import ServerThread

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("clean_vllm_engine")]

APP = "brewbird-support"
NO_CONTEXT = "BrewBird's guides say nothing on that."
UNRELATED = "Who won the 1954 chess olympiad in Amsterdam?"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def served(vllm_engine, tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("edges")
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root / "chroma"))
    catalog.create("brewbird-kb").ingest([EXAMPLES / "branded-chatbot" / "brands/brewbird/kb"])
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), max_rank=8)
    registry.register(random_lora(tiny_llama_dir, root / "voice", seed=5, alpha=128), "voice")
    spec = AppSpec(
        name=APP,
        knowledge_base="brewbird-kb",
        adapter="voice",
        persona="You are BrewBird's support assistant.",
        retrieval={"top_k": 2},
        no_context={"message": NO_CONTEXT},
    )
    budget = PromptBudget(tiny_llama_dir, vllm_engine.config.max_model_len)
    metrics = GatewayMetrics()
    manager = AdapterManager(
        registry, EngineSet.build(supervised=vllm_engine), vllm_engine.config.base_model_name
    )
    pipeline = open_pipeline(spec, catalog, budget)
    composer = AppComposer([pipeline], manager.base_name)
    state = GatewayState.build(
        GatewayConfig(),
        manager,
        composers=[composer],
        metrics=metrics,
        embedders=[KnowledgeBaseEmbeddings([pipeline])],
    )
    with ServerThread(create_app(state)) as server:
        server.registry = registry
        server.base = manager.base_name
        server.pipeline = pipeline
        yield server


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)


def post(server, route: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + route, json=body, timeout=300)


def events(response: httpx.Response) -> list[dict]:
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", response.text[-300:]
    return [json.loads(line) for line in lines[:-1]]


# ---- OpenAI's schema ------------------------------------------------------------------------
# No copy of OpenAI's OpenAPI document ships in any installed package (openai, vllm,
# litellm were searched), so the rules it states for these objects are written out here:
# optional fields are absent rather than null, `refusal` is required (nullable) in a message,
# error codes are strings. The SDK's own types check every other field's type.

OPTIONAL_NOT_NULL = {
    "message": ("annotations", "function_call", "tool_calls", "audio"),
    "delta": ("function_call", "tool_calls", "annotations", "audio"),
    "usage": ("completion_tokens_details", "prompt_tokens_details"),
    "top": ("system_fingerprint",),
}


def schema_problems(answer: dict) -> list[str]:
    problems = [
        f"{k} is null" for k in OPTIONAL_NOT_NULL["top"] if k in answer and answer[k] is None
    ]
    usage = answer.get("usage") or {}
    problems += [
        f"usage.{k} is null" for k in OPTIONAL_NOT_NULL["usage"] if k in usage and usage[k] is None
    ]
    for choice in answer.get("choices") or []:
        for part in ("message", "delta"):
            fields = choice.get(part)
            if isinstance(fields, dict):
                problems += [
                    f"{part}.{k} is null"
                    for k in OPTIONAL_NOT_NULL[part]
                    if k in fields and fields[k] is None
                ]
        if isinstance(choice.get("message"), dict) and "refusal" not in choice["message"]:
            problems.append("message.refusal is missing")
    return problems


def check_chat(answer: dict) -> None:
    assert schema_problems(answer) == []
    openai.types.chat.ChatCompletion.model_validate(answer)


@pytest.mark.parametrize("model", ["base", "voice", APP])
def test_answers_follow_openais_schema_streamed_and_not(served, model):
    model = served.base if model == "base" else model
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "How do I descale the kettle?"}],
        "max_tokens": 4,
    }
    answer = post(served, "/v1/chat/completions", body)
    assert answer.status_code == 200, answer.text
    check_chat(answer.json())
    streamed = post(
        served,
        "/v1/chat/completions",
        {**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    chunks = events(streamed)
    for chunk in chunks:
        assert schema_problems(chunk) == [], chunk
        if chunk.get("choices"):
            openai.types.chat.ChatCompletionChunk.model_validate(chunk)
    (usage,) = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    assert usage["completion_tokens"] >= 1
    if model != APP:
        text = post(served, "/v1/completions", {"model": model, "prompt": "Hi", "max_tokens": 3})
        assert text.status_code == 200 and schema_problems(text.json()) == []
        openai.types.Completion.model_validate(text.json())
    if model == APP:
        return  # an app fits max_tokens into its own prompt budget (issue 13.10)
    refused = post(served, "/v1/chat/completions", {**body, "max_tokens": 10**6})
    assert refused.status_code == 400
    assert isinstance(refused.json()["error"]["code"], str)


CLIENT_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def tool_round_trip(
    served, model: str, ask: str = "What is the weather in Paris?"
) -> openai.types.chat.ChatCompletion:
    """Requests with tools, a forced call and a tool-result follow-up: each was a 400 before the
    engine ran with a tool-call parser. The tiny random model cannot be relied on to write a
    call (under the call's JSON grammar it may emit whitespace until max_tokens), so the call
    the follow-up answers is the client's; SmolLM2 writes real ones in
    test_tools_smollm2_vllm.py."""
    api = client(served)
    question = [{"role": "user", "content": ask}]
    free = api.chat.completions.create(
        model=model, messages=question, tools=[WEATHER_TOOL], max_tokens=5
    )
    assert free.choices[0].finish_reason in ("stop", "length", "tool_calls")
    forced = post(
        served,
        "/v1/chat/completions",
        {
            "model": model,
            "messages": question,
            "tools": [WEATHER_TOOL],
            "tool_choice": FORCE_WEATHER,
            "max_tokens": 8,
        },
    )
    assert forced.status_code == 200, forced.text
    check_chat(forced.json())
    follow_up = [
        *question,
        {"role": "assistant", "content": None, "tool_calls": [CLIENT_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21}'},
    ]
    answer = api.chat.completions.create(
        model=model, messages=follow_up, tools=[WEATHER_TOOL], max_tokens=5
    )
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    streamed = post(
        served,
        "/v1/chat/completions",
        {
            "model": model,
            "messages": follow_up,
            "tools": [WEATHER_TOOL],
            "max_tokens": 5,
            "stream": True,
        },
    )
    assert streamed.status_code == 200
    for chunk in events(streamed):
        assert schema_problems(chunk) == [], chunk
    return answer


@pytest.mark.parametrize("model", ["base", "voice"])
def test_tools_on_base_and_adapter(served, model):
    model = served.base if model == "base" else model
    answer = tool_round_trip(served, model)
    assert answer.model == (model if model == served.base else "voice@v1")


def test_tools_through_an_app(served):
    answer = tool_round_trip(served, APP, "How do I descale the kettle?")
    # the app still retrieved its passages for the last user question and answered as itself
    assert answer.model == APP and answer.model_extra["hybrid"]["sources"]


class Weather(BaseModel):
    city: str
    celsius: float


def test_an_apps_no_context_answer_is_a_refusal_under_structured_output(served):
    api = client(served)
    messages = [{"role": "user", "content": UNRELATED}]
    parsed = api.chat.completions.parse(model=APP, messages=messages, response_format=Weather)
    message = parsed.choices[0].message
    assert message.parsed is None and message.content is None
    assert message.refusal == NO_CONTEXT
    assert parsed.usage.prompt_tokens >= 10 and parsed.usage.completion_tokens >= 3
    assert parsed.usage.total_tokens == parsed.usage.prompt_tokens + parsed.usage.completion_tokens
    plain = api.chat.completions.create(model=APP, messages=messages)
    assert (
        plain.choices[0].message.content == NO_CONTEXT and plain.choices[0].message.refusal is None
    )
    assert plain.usage.prompt_tokens == parsed.usage.prompt_tokens
    check_chat(plain.model_dump(mode="json", exclude_unset=True))
    streamed = post(
        served,
        "/v1/chat/completions",
        {
            "model": APP,
            "messages": messages,
            "response_format": {"type": "json_object"},
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    chunks = events(streamed)
    refusal = "".join(c["choices"][0]["delta"].get("refusal", "") for c in chunks if c["choices"])
    assert refusal == NO_CONTEXT and chunks[-1]["usage"]["prompt_tokens"] >= 10


def test_openais_limits_n_128_and_token_id_prompts(served):
    api = client(served)
    many = api.chat.completions.create(
        model=served.base, messages=[{"role": "user", "content": "hi"}], n=128, max_tokens=1
    )
    assert len(many.choices) == 128
    ids = api.completions.create(model=served.base, prompt=[1, 2, 3], max_tokens=2)
    assert len(ids.choices) == 1 and ids.usage.prompt_tokens == 3
    batch = api.completions.create(model="voice", prompt=[[1, 2], [3]], max_tokens=2)
    assert len(batch.choices) == 2 and batch.usage.prompt_tokens == 3


def test_model_cards_carry_their_creation_time(served):
    cards = {m.id: m for m in client(served).models.list().data}
    (version,) = served.registry.list()
    from datetime import datetime

    registered = int(datetime.fromisoformat(version.registered_at).timestamp())
    assert cards["voice@v1"].created == registered == cards["voice"].created
    assert cards[served.base].created > 1_700_000_000 and cards[APP].created > 1_700_000_000


def test_embeddings_with_a_knowledge_bases_embedder(served):
    api = client(served)
    texts = ["How do I descale the kettle?", "Warranty of the BB-100"]
    (card,) = [m for m in api.models.list().data if m.id == "all-MiniLM-L6-v2"]
    embedder = served.pipeline.knowledge_base.embedder
    expected = embedder.model.get_text_embedding_batch(texts)
    for model in ("all-MiniLM-L6-v2", APP):  # the SDK asks for base64 and decodes it
        answer = api.embeddings.create(model=model, input=texts)
        assert [d.index for d in answer.data] == [0, 1] and answer.model == "all-MiniLM-L6-v2"
        for got, want in zip(answer.data, expected, strict=True):
            assert len(got.embedding) == 384 == card.model_extra["hybrid"]["dimension"]
            assert max(abs(a - b) for a, b in zip(got.embedding, want, strict=True)) < 1e-5
        assert answer.usage.prompt_tokens == sum(embedder.count_tokens(t) for t in texts)
    floats = api.embeddings.create(model=APP, input=texts[0], encoding_format="float")
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == 384
    with pytest.raises(openai.NotFoundError, match="makes no embeddings"):
        api.embeddings.create(model=served.base, input="x")
    with pytest.raises(openai.BadRequestError, match="384-dimensional"):
        api.embeddings.create(model=APP, input="x", dimensions=64)


@pytest.mark.parametrize("model", ["base", "voice"])
def test_responses_api_passes_through_to_vllm(served, model):
    model = served.base if model == "base" else model
    api = client(served)
    answer = api.responses.create(model=model, input="Say hi", max_output_tokens=5)
    assert answer.status in ("completed", "incomplete") and answer.output
    assert answer.model == (model if model == served.base else "voice@v1")
    with api.responses.stream(model=model, input="Say hi", max_output_tokens=5) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "response.created" and kinds[-1] in (
        "response.completed",
        "response.incomplete",
    )
    with pytest.raises(openai.BadRequestError, match="apps answer on /v1/chat/completions"):
        api.responses.create(model=APP, input="hi")
