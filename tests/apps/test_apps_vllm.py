"""Two apps on one real vLLM engine (tiny model), through the real gateway and the official
openai client: each answers from its own knowledge base with its own adapter (checked by PEFT
parity on the exact prompt the app built), sources are the passages really retrieved, and an
unrelated question takes the no-context path."""

from __future__ import annotations

import openai
import pytest

from hybrid.apps.app import open_pipeline
from hybrid.apps.budget import PromptBudget
from hybrid.apps.spec import AppSpec
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from tests.conftest import EXAMPLES
from tests.helpers.adapters import peft_greedy, random_lora
from tests.helpers.gateway import serve_apps
from tests.helpers.reliability import record

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("clean_vllm_engine")]

BRANDS = EXAMPLES / "branded-chatbot" / "brands"
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def two_apps(vllm_engine, tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("two-apps")
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root / "chroma"))
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), max_rank=8)
    adapters, pipelines = {}, []
    for seed, brand in enumerate(("brewbird", "kettleandco"), start=21):
        catalog.create(f"{brand}-kb").ingest([BRANDS / brand / "kb"])
        adapters[brand] = random_lora(tiny_llama_dir, root / brand, seed=seed, alpha=128)
        registry.register(adapters[brand], f"{brand}-voice")
        spec = AppSpec(
            name=f"{brand}-support",
            knowledge_base=f"{brand}-kb",
            adapter=f"{brand}-voice",
            persona=f"You are the support assistant of {brand}.",
            retrieval={"top_k": 2},
            no_context={"message": f"{brand} has nothing on that."},
        )
        budget = PromptBudget(tiny_llama_dir, vllm_engine.config.max_model_len)
        pipelines.append(open_pipeline(spec, catalog, budget))
    with serve_apps(vllm_engine, registry, pipelines) as server:
        yield server, {p.spec.name: p for p in pipelines}, adapters


def test_two_apps_each_answer_with_their_own_adapter_and_knowledge(two_apps, tiny_llama_dir):
    server, pipelines, adapters = two_apps
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    question = "How long is the warranty on the espresso machine?"
    listed = {m.id for m in client.models.list().data}
    assert {"brewbird-support", "kettleandco-support"} <= listed
    for brand in ("brewbird", "kettleandco"):
        app = f"{brand}-support"
        answer = client.chat.completions.create(
            model=app,
            messages=[{"role": "user", "content": question}],
            max_tokens=NEW_TOKENS,
            temperature=0,
            logprobs=True,  # an app request may not ask for prompt token ids; the output's
            extra_body={"min_tokens": NEW_TOKENS, "return_tokens_as_token_ids": True},
        )
        notes = answer.model_extra["hybrid"]
        assert answer.model == app and notes["served_by"] == f"{brand}-voice@v1"
        retrieved = pipelines[app].retrieve(question)
        shown = len(notes["sources"])  # what fits the tiny model's 1024-token window
        assert 1 <= shown <= len(retrieved)
        expected = retrieved[:shown]
        assert [s["file_name"] for s in notes["sources"]] == [p.file_name for p in expected]
        # names in the knowledge base, not the server's paths
        assert [s["source"] for s in notes["sources"]] == [p.file_name for p in expected]
        assert notes["sources"][0]["snippet"] in expected[0].text or expected[0].text.startswith(
            notes["sources"][0]["snippet"].rstrip("…")
        )
        prompt_ids = app_prompt_ids(tiny_llama_dir, pipelines[app], question, expected)
        assert len(prompt_ids) == answer.usage.prompt_tokens
        tokens = [
            int(t.token.removeprefix("token_id:")) for t in answer.choices[0].logprobs.content
        ]
        assert tokens == peft_greedy(tiny_llama_dir, adapters[brand], prompt_ids, NEW_TOKENS)
        other = "kettleandco" if brand == "brewbird" else "brewbird"
        assert tokens != peft_greedy(tiny_llama_dir, adapters[other], prompt_ids, NEW_TOKENS)


def app_prompt_ids(tokenizer_dir, pipeline, question: str, passages) -> list[int]:
    """The token ids of the prompt `pipeline` builds, as the engine tokenizes it."""
    from transformers import AutoTokenizer

    body = {"messages": [{"role": "user", "content": question}]}
    messages = pipeline.engine_body(body, passages)["messages"]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]


PROMPT_FIELDS = {  # vLLM fields that hand back the prompt the engine saw
    "prompt_logprobs": 0,
    "echo": True,
    "return_token_ids": True,
    "return_prompt_text": True,
}


@pytest.mark.reliability
def test_an_apps_prompt_cannot_be_read_back_through_engine_fields(two_apps):
    """`prompt_logprobs` passed through to vLLM returned the app's whole system prompt and
    passages token by token. Shown on the base model (the client's own prompt): the fields do
    hand the prompt back; on an app they are refused before retrieval or the engine."""
    server, pipelines, _ = two_apps
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    question = [{"role": "user", "content": "How long is the warranty on the espresso machine?"}]
    app = "brewbird-support"
    passages = pipelines[app].passages(question[0]["content"], {"max_tokens": 4})
    hidden = pipelines[app].engine_body({"messages": question}, passages)["messages"]
    exposed = client.chat.completions.create(
        model="tiny-llama",
        messages=hidden,  # what the app would send, asked for as a plain request
        max_tokens=1,
        extra_body={"prompt_logprobs": 0, "return_token_ids": True},
    )
    assert len(exposed.model_extra["prompt_logprobs"]) == exposed.usage.prompt_tokens > 100
    assert len(exposed.model_extra["prompt_token_ids"]) == exposed.usage.prompt_tokens
    refused = 0
    for field, value in PROMPT_FIELDS.items():
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model=app, messages=question, max_tokens=4, extra_body={field: value}
            )
        assert info.value.body["param"] == field and f"'{field}'" in info.value.message
        refused += 1
    answer = client.chat.completions.create(
        model=app, messages=question, max_tokens=4, logprobs=True, top_logprobs=2
    )  # logprobs of the answer's own tokens stay allowed
    assert len(answer.choices[0].logprobs.content) == answer.usage.completion_tokens
    assert "prompt_logprobs" not in (answer.model_extra or {}) or not answer.model_extra.get(
        "prompt_logprobs"
    )
    record(
        "Tenants and keys",
        "Tenant leaks on real vLLM: prompt_logprobs, echo, return_token_ids, return_prompt_text "
        "sent to an app (on the base model prompt_logprobs returns every prompt token)",
        fields_tried=len(PROMPT_FIELDS),
        refused=refused,
        prompt_tokens_exposed_via_app=0,
    )


def test_unrelated_question_is_not_answered_from_nothing(two_apps):
    server, _, _ = two_apps
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    answer = client.chat.completions.create(
        model="kettleandco-support",
        messages=[{"role": "user", "content": "Who won the 1954 chess olympiad in Amsterdam?"}],
    )
    assert answer.choices[0].message.content == "kettleandco has nothing on that."
    assert answer.model_extra["hybrid"]["no_context"] is True
