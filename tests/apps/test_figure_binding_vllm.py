"""Figure binding on the real engine: an app with `bind_figures` served by vLLM (tiny model, with
a LoRA adapter) through the real gateway and the official openai client writes only figures its
passages or question hold, while the same requests to the same app without binding write others
(the random tiny model sprinkles digits freely). A client's own `structured_outputs` cannot undo
the app's binding."""

from __future__ import annotations

import openai
import pytest

from hybrid.apps.app import open_pipeline
from hybrid.apps.budget import PromptBudget
from hybrid.apps.figure_binding import figures_in, unbound_figures
from hybrid.apps.spec import AppSpec
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from tests.conftest import EXAMPLES
from tests.helpers.adapters import random_lora
from tests.helpers.gateway import serve_apps

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("clean_vllm_engine")]

KB = EXAMPLES / "branded-chatbot" / "brands" / "brewbird" / "kb"
QUESTION = "How often should I descale the BB-100, and how much citric acid per 1 litre?"
TOKENS = 40


@pytest.fixture(scope="module")
def gateway(vllm_engine, tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("figure-binding")
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root / "chroma"))
    catalog.create("brewbird").ingest([KB])
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), max_rank=8)
    registry.register(random_lora(tiny_llama_dir, root / "voice", seed=5), "voice")
    budget = PromptBudget(tiny_llama_dir, vllm_engine.config.max_model_len)
    pipelines = {}
    for name, bind in (("bound", True), ("free", False)):
        spec = AppSpec(
            name=name,
            knowledge_base="brewbird",
            adapter="voice",
            persona="You are Pip, the BrewBird assistant.",
            retrieval={"top_k": 2},
            generation={"bind_figures": bind},
        )
        pipelines[name] = open_pipeline(spec, catalog, budget)
    with serve_apps(vllm_engine, registry, list(pipelines.values())) as server:
        yield openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0), pipelines


def _ask(client, app: str, min_tokens: int = TOKENS, **extra):
    return client.chat.completions.create(
        model=app,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=TOKENS,
        temperature=1.0,
        seed=11,
        n=6,
        extra_body={"min_tokens": min_tokens, **extra},
    )


def test_bound_answers_write_only_the_sources_figures(gateway):
    client, pipelines = gateway
    messages = [{"role": "user", "content": QUESTION}]
    shown = pipelines["bound"].passages(QUESTION, {"messages": messages, "max_tokens": TOKENS})
    assert shown, "retrieval found nothing: the test would not exercise the binding"
    allowed = figures_in([p.text for p in shown] + [QUESTION])

    bound = _ask(client, "bound")
    assert bound.model_extra["hybrid"]["served_by"] == "voice@v1"  # binding combines with LoRA
    assert len(bound.model_extra["hybrid"]["sources"]) == len(shown)
    texts = [c.message.content for c in bound.choices]
    assert all(text.strip() for text in texts), texts
    assert {c.finish_reason for c in bound.choices} <= {"length", "stop"}
    assert [unbound_figures(t, allowed) for t in texts] == [[]] * len(texts), texts

    stream = client.chat.completions.create(
        model="bound",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=TOKENS,
        temperature=1.0,
        seed=12,
        stream=True,
        extra_body={"min_tokens": TOKENS},
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed.strip() and unbound_figures(streamed, allowed) == [], streamed

    free = [c.message.content for c in _ask(client, "free").choices]
    assert any(unbound_figures(t, allowed) for t in free), (
        "without binding the random model wrote no figure outside the sources, so this test "
        f"could not tell binding from chance: {free}"
    )


def test_a_client_cannot_replace_the_apps_binding(gateway):
    client, pipelines = gateway
    injected = {"regex": "9{30}"}
    answer = _ask(client, "bound", min_tokens=0, structured_outputs=injected)
    messages = [{"role": "user", "content": QUESTION}]
    shown = pipelines["bound"].passages(QUESTION, {"messages": messages, "max_tokens": TOKENS})
    allowed = figures_in([p.text for p in shown] + [QUESTION])
    texts = [c.message.content for c in answer.choices]
    assert "9" * 30 not in texts
    assert [unbound_figures(t, allowed) for t in texts] == [[]] * len(texts), texts
    # Without binding the client's own constraint reaches the engine unchanged.
    free = _ask(client, "free", min_tokens=0, structured_outputs=injected)
    assert {c.message.content for c in free.choices} == {"9" * 30}
