"""An app's request flow with a real knowledge base (MiniLM, embedded Chroma): through the
gateway over the fake engine (fast), and in-process with `App.chat` on the tiny model."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from hybrid.apps.app import App, open_pipeline
from hybrid.apps.composer import AppComposer
from hybrid.apps.loading import load_pipelines
from hybrid.apps.spec import AppSpec
from hybrid.config import HybridConfig
from hybrid.errors import ConfigError
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import GatewayConfig, GatewayMetrics, GatewayState, create_app
from tests.helpers.adapters import random_lora
from tests.helpers.documents import write_brewbird_docs
from tests.serving.fake_engine import FakeEngine


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("apps")
    docs = write_brewbird_docs(root / "docs", "refunds.md", "warranty.md", "contact.md")
    config = HybridConfig(store=EmbeddedStoreConfig(path=root / "chroma"))
    catalog = KnowledgeBaseCatalog(config.store)
    catalog.create("brewbird-kb").ingest([docs])
    return config, catalog


def spec(**overrides) -> AppSpec:
    settings = dict(
        name="brewbird",
        knowledge_base="brewbird-kb",
        adapter="voice",
        persona="You are Pip, BrewBird's assistant.",
        no_context={"message": "That is not in BrewBird's guides. Happy brewing!"},
    )
    settings.update(overrides)
    return AppSpec.model_validate(settings)


@pytest.fixture
def gateway(store, tmp_path, tiny_llama_dir):
    _, catalog = store
    registry = AdapterRegistry(tmp_path / "registry", describe_base(tiny_llama_dir), 16)
    registry.register(random_lora(tiny_llama_dir, tmp_path / "lora"), "voice")
    engine = FakeEngine()
    client = EngineClient("http://fake", transport=httpx.ASGITransport(engine.app))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), "base")
    metrics = GatewayMetrics()
    composer = AppComposer([open_pipeline(spec(), catalog)], "base", metrics.registry)
    state = GatewayState.build(GatewayConfig(), manager, composers=[composer], metrics=metrics)
    with TestClient(create_app(state)) as http:
        yield http, engine


def ask(http, question: str, **extra) -> httpx.Response:
    body = {"model": "brewbird", "messages": [{"role": "user", "content": question}], **extra}
    return http.post("/v1/chat/completions", json=body)


def test_app_answer_uses_its_adapter_passages_and_reports_sources(gateway):
    http, engine = gateway
    engine.reply = "You have 45 days to return it [1]. Happy brewing!"
    answer = ask(http, "How long do I have to return my machine?", temperature=0).json()
    assert answer["model"] == "brewbird"
    sent = engine.requests[-1]
    assert sent["model"] == "voice@v1"
    assert sent["temperature"] == 0 and sent["max_tokens"] == 256  # client wins, defaults fill
    system = sent["messages"][0]["content"]
    assert system.startswith("You are Pip, BrewBird's assistant.")
    assert "[1] (refunds.md)\n# Refunds\n\nBrewBird accepts returns within 45 days" in system
    notes = answer["hybrid"]
    assert notes["served_by"] == "voice@v1" and notes["app"] == "brewbird"
    assert notes["sources"][0]["file_name"] == "refunds.md"
    assert [(c["index"], c["file_name"], c["how"]) for c in notes["citations"]] == [
        (1, "refunds.md", "marker")
    ]
    assert notes["grounding"] == {
        "grounded": True,
        "checked": 1,
        "ungrounded": [],
        "unknown_citations": [],
    }
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert models["brewbird"]["hybrid"]["kind"] == "app"
    assert models["brewbird"]["root"] == "voice"


def test_leaked_figures_are_flagged_and_counted(gateway):
    http, engine = gateway
    engine.reply = "The BB-100 has a 7-year warranty, says Tom Baxter."
    notes = ask(http, "What warranty does the BB-100 have?").json()["hybrid"]
    assert notes["grounding"]["grounded"] is False
    assert notes["grounding"]["ungrounded"] == [
        # "7-year": the knowledge base says 2 and 3 years
        {"text": "7", "kind": "number", "reason": "no passage gives 7-year"},
        {"text": "Tom Baxter", "kind": "name", "reason": "no passage names it"},
    ]
    engine.reply = "The warranty lasts 10 years."
    ask(http, "What warranty does the BB-100 have?")
    metrics = http.get("/metrics").text
    assert 'hybrid_ungrounded_claims_total{app="brewbird",kind="number"} 2.0' in metrics
    assert 'hybrid_ungrounded_claims_total{app="brewbird",kind="name"} 1.0' in metrics
    assert 'hybrid_ungrounded_answers_total{app="brewbird"} 2.0' in metrics


def test_unrelated_question_takes_the_no_context_path(gateway):
    http, engine = gateway
    before = len(engine.requests)
    answer = ask(http, "What is the boiling point of liquid nitrogen on Neptune?").json()
    assert answer["choices"][0]["message"]["content"] == (
        "That is not in BrewBird's guides. Happy brewing!"
    )
    assert answer["hybrid"]["no_context"] is True and answer["hybrid"]["sources"] == []
    assert answer["hybrid"]["grounding"]["checked"] == 0  # the app's own text is not checked
    assert len(engine.requests) == before  # nothing was generated, nothing invented
    streamed = ask(http, "What is the boiling point of liquid nitrogen on Neptune?", stream=True)
    lines = [json.loads(x[6:]) for x in streamed.text.splitlines() if x.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in lines if c["choices"])
    assert text == "That is not in BrewBird's guides. Happy brewing!"
    assert lines[-1]["hybrid"]["no_context"] is True


def test_a_question_about_a_name_the_guides_never_mention_is_not_answered(gateway):
    """Similar passages exist (BrewBird's warranty), but the question is about another maker:
    the app's default `known_names_only` sends it down the no-context path."""
    http, engine = gateway
    before = len(engine.requests)
    answer = ask(http, "How long is the warranty on a Breville espresso machine?").json()
    assert answer["hybrid"]["no_context"] is True and answer["hybrid"]["sources"] == []
    assert len(engine.requests) == before
    ours = ask(http, "How long is the warranty on a BrewBird machine?").json()
    assert ours["hybrid"]["no_context"] is False and ours["hybrid"]["sources"]


def test_streamed_app_answer_ends_with_its_citations(gateway):
    http, engine = gateway
    engine.reply = "Call 555-0142 [1]."
    streamed = ask(http, "What number do I call for support?", stream=True)
    lines = [x[6:] for x in streamed.text.splitlines() if x.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    last = json.loads(lines[-2])
    assert last["choices"] == [] and last["model"] == "brewbird"
    assert [c["file_name"] for c in last["hybrid"]["citations"]] == ["contact.md"]
    empty = ask(http, "   ")
    assert empty.status_code == 400 and "last user message is empty" in empty.text


def test_serve_refuses_apps_with_missing_parts_all_at_once(store, tmp_path, tiny_llama_dir):
    _, catalog = store
    registry = AdapterRegistry(tmp_path / "registry", describe_base(tiny_llama_dir), 16)
    app_file = tmp_path / "apps" / "a.yaml"
    app_file.parent.mkdir()
    app_file.write_text(
        "name: lost\nknowledge_base: no-such-kb\nadapter: ghost\npersona: Hi.\n"
        "base_model: other-model\n"
    )
    with pytest.raises(ConfigError) as info:
        load_pipelines([app_file.parent], catalog, registry, "base")
    message = str(info.value)
    assert "expects base model 'other-model' but the engine serves 'base'" in message
    assert "uses adapter 'ghost'" in message and "hybrid adapter register" in message
    assert "uses knowledge base 'no-such-kb'" in message and "hybrid kb create" in message


class Scripted:
    def __init__(self, reply: str):
        self.reply = reply
        self.calls: list[tuple[list[dict], dict]] = []

    def generate(self, messages, sampling):
        self.calls.append((messages, sampling))
        return self.reply


def test_python_api_answers_like_the_gateway(store, tmp_path):
    config, _ = store
    app_file = tmp_path / "app.yaml"
    app_file.write_text(
        "name: brewbird\nknowledge_base: brewbird-kb\npersona: You are Pip.\n"
        "generation: {max_tokens: 40}\n"
    )
    generator = Scripted("Refunds take 5 business days [1].")
    app = App.from_yaml(app_file, config=config, generator=generator)
    answer = app.chat("How quickly are refunds paid?", temperature=0)
    assert answer.text == "Refunds take 5 business days [1]."
    assert answer.grounded and answer.citations[0]["file_name"] == "refunds.md"
    messages, sampling = generator.calls[0]
    assert sampling == {"max_tokens": 40, "temperature": 0}
    assert messages[0]["content"].startswith("You are Pip.") and messages[-1]["role"] == "user"


def test_python_api_generates_in_process_with_the_base_model(store, tmp_path, tiny_llama_dir):
    from serving.engine import RemoteEngineConfig

    config, _ = store
    config = config.model_copy(
        update={  # adapters are checked against base_model; no engine is started or asked
            "base_model": tiny_llama_dir,
            "remote_engines": RemoteEngineConfig(urls=("http://127.0.0.1:9",)),
        }
    )
    app_file = tmp_path / "app.yaml"
    app_file.write_text("name: plain\nknowledge_base: brewbird-kb\npersona: You are Pip.\n")
    answer = App.from_yaml(app_file, config=config).chat(
        "How long is the BB-200 Pro warranty?", max_tokens=6, temperature=0
    )
    assert isinstance(answer.text, str) and answer.text == answer.text.strip()
    assert answer.notes.sources and answer.notes.sources[0]["file_name"] == "warranty.md"
