"""An app's `answer_schema`: every generated answer checked against it, the verdict in the
`hybrid` field and in /metrics. Through the gateway over the fake engine, with a real knowledge
base (MiniLM, embedded Chroma); the real engine's structured output is exercised by the KPI
card example's test (tests/test_kpi_cards_example.py)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import httpx
import pytest
from fastapi.testclient import TestClient

from hybrid.apps.answer_schema import AnswerSchema
from hybrid.apps.app import open_pipeline
from hybrid.apps.composer import AppComposer
from hybrid.apps.spec import AppSpec, load_app_spec
from hybrid.errors import ConfigError
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import GatewayConfig, GatewayMetrics, GatewayState, create_app
from tests.serving.fake_engine import FakeEngine

CARD_SCHEMA = {
    "type": "object",
    "properties": {
        "metric": {"type": "string"},
        "value": {"type": "number"},
        "unit": {"type": "string", "enum": ["USD million", "%"]},
    },
    "required": ["metric", "value", "unit"],
    "additionalProperties": False,
}
GOOD = '{"metric": "Revenue", "value": 412.6, "unit": "USD million"}'


def test_check_says_why_an_answer_breaks_the_schema():
    schema = AnswerSchema(CARD_SCHEMA)
    assert schema.check(GOOD).to_dict() == {"valid": True, "errors": []}
    assert schema.check(f"  {GOOD}\n").valid  # surrounding whitespace is still one JSON value
    bad = schema.check('{"metric": "Revenue", "value": "412.6", "unit": "dollars", "x": 1}')
    assert not bad.valid
    assert set(bad.errors) == {
        "value: '412.6' is not of type 'number'",
        "unit: 'dollars' is not one of ['USD million', '%']",
        "(top level): Additional properties are not allowed ('x' was unexpected)",
    }
    assert schema.check('{"metric": "Revenue"}').errors == (
        "(top level): 'value' is a required property",
        "(top level): 'unit' is a required property",
    )
    fenced = schema.check(f"```json\n{GOOD}\n```")
    assert fenced.errors == ("not JSON: Expecting value at character 0",)
    cut = schema.check(GOOD[:30])
    assert not cut.valid and cut.errors[0].startswith("not JSON: ")


def test_app_file_names_its_schema_by_path_and_bad_schemas_are_refused(tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "card.json").write_text(json.dumps(CARD_SCHEMA))
    app = tmp_path / "apps" / "cards.yaml"
    app.parent.mkdir()
    base = "# cards\nname: cards\nknowledge_base: kb\npersona: You write cards.\n"
    app.write_text(base + "answer_schema: ../schemas/card.json\n")
    assert load_app_spec(app).answer_schema == CARD_SCHEMA
    app.write_text(base + "answer_schema: ../schemas/missing.json\n")
    with pytest.raises(ConfigError, match=r"answer_schema file not found: .*schemas/missing.json"):
        load_app_spec(app)
    app.write_text(base + "answer_schema: {type: objekt}\n")
    with pytest.raises(ConfigError, match=r"answer_schema: not a valid JSON schema at type: "):
        load_app_spec(app)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("cards")
    (root / "docs").mkdir()
    (root / "docs" / "report.md").write_text(
        "# Revenue\n\nTotal revenue rose 18% to $412.6 million in 2025."
    )
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root / "chroma"))
    catalog.create("report").ingest([root / "docs"])
    return catalog


@contextmanager
def served(catalog, root, base_dir, apps: list[dict]):
    """The gateway over the fake engine with `apps` (AppSpec fields over the common ones)."""
    registry = AdapterRegistry(root / "registry", describe_base(base_dir), 16)
    engine = FakeEngine()
    client = EngineClient("http://fake", transport=httpx.ASGITransport(engine.app))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), "base")
    metrics = GatewayMetrics()
    common = dict(knowledge_base="report", persona="You write KPI cards.")
    specs = [AppSpec.model_validate({**common, **app}) for app in apps]
    composer = AppComposer([open_pipeline(s, catalog) for s in specs], "base", metrics.registry)
    state = GatewayState.build(GatewayConfig(), manager, composers=[composer], metrics=metrics)
    with TestClient(create_app(state)) as http:
        yield http, engine


@pytest.fixture
def gateway(catalog, tmp_path, tiny_llama_dir):
    apps = [{"name": "cards", "answer_schema": CARD_SCHEMA}, {"name": "prose"}]
    with served(catalog, tmp_path, tiny_llama_dir, apps) as both:
        yield both


def ask(http, model: str, question: str, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": question}], **extra}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_answer_is_checked_reported_and_counted(gateway):
    http, engine = gateway
    engine.reply = GOOD
    form = {"type": "json_schema", "json_schema": {"name": "card", "schema": CARD_SCHEMA}}
    answer = ask(http, "cards", "What was total revenue in 2025?", response_format=form)
    assert answer["choices"][0]["message"]["content"] == GOOD  # the card is the content
    assert answer["hybrid"]["answer_schema"] == {"valid": True, "errors": []}
    assert engine.requests[-1]["response_format"] == form  # the client's, to the engine as is

    engine.reply = "Total revenue was $412.6 million."
    notes = ask(http, "cards", "What was total revenue in 2025?")["hybrid"]
    assert notes["answer_schema"] == {
        "valid": False,
        "errors": ["not JSON: Expecting value at character 0"],
    }
    stream = http.post(
        "/v1/chat/completions",
        json={
            "model": "cards",
            "messages": [{"role": "user", "content": "What was total revenue in 2025?"}],
            "stream": True,
        },
    ).text
    last = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")][-1]
    assert last["hybrid"]["answer_schema"]["valid"] is False  # the streamed answer, checked

    assert "answer_schema" not in ask(http, "prose", "What was total revenue in 2025?")["hybrid"]
    no_context = ask(http, "cards", "Which bread flour is best for sourdough?")["hybrid"]
    assert no_context["no_context"] and "answer_schema" not in no_context  # nothing generated

    metrics = http.get("/metrics").text
    assert 'hybrid_answer_schema_checks_total{app="cards",result="valid"} 1.0' in metrics
    assert 'hybrid_answer_schema_checks_total{app="cards",result="invalid"} 2.0' in metrics
    assert 'hybrid_answer_schema_checks_total{app="prose"' not in metrics


def test_enforce_answer_schema_needs_a_schema_and_excludes_figure_binding():
    common = dict(name="cards", knowledge_base="report", persona="You write KPI cards.")
    with pytest.raises(ValueError, match="enforce_answer_schema needs an answer_schema"):
        AppSpec.model_validate({**common, "generation": {"enforce_answer_schema": True}})
    with pytest.raises(ValueError, match="cannot both be on"):
        AppSpec.model_validate(
            {
                **common,
                "answer_schema": CARD_SCHEMA,
                "generation": {"enforce_answer_schema": True, "bind_figures": True},
            }
        )
    spec = AppSpec.model_validate(
        {**common, "answer_schema": CARD_SCHEMA, "generation": {"enforce_answer_schema": True}}
    )
    assert "enforce_answer_schema" not in spec.generation.as_body()  # never a sampling value


@pytest.fixture
def enforcing(catalog, tmp_path, tiny_llama_dir):
    app = {"name": "cards", "answer_schema": CARD_SCHEMA}
    app["generation"] = {"enforce_answer_schema": True}
    with served(catalog, tmp_path, tiny_llama_dir, [app]) as both:
        yield both


def test_an_enforcing_app_decodes_under_its_schema_unless_the_client_asks_a_shape(enforcing):
    http, engine = enforcing
    engine.reply = GOOD
    question = "What was total revenue in 2025?"
    assert ask(http, "cards", question)["hybrid"]["answer_schema"]["valid"]
    assert engine.requests[-1]["structured_outputs"] == {"json": CARD_SCHEMA}
    assert "response_format" not in engine.requests[-1]

    # a client's own shape wins: its response_format (text: the model's free answer) or tools
    ask(http, "cards", question, response_format={"type": "text"})
    assert "structured_outputs" not in engine.requests[-1]
    assert engine.requests[-1]["response_format"] == {"type": "text"}
    own = {"type": "json_schema", "json_schema": {"name": "m", "schema": {"type": "object"}}}
    ask(http, "cards", question, response_format=own)
    assert "structured_outputs" not in engine.requests[-1]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ask(http, "cards", question, tools=[tool])
    assert "structured_outputs" not in engine.requests[-1]

    sent = len(engine.requests)  # nothing relevant found: the fixed answer, no engine call
    assert ask(http, "cards", "Which bread flour is best for sourdough?")["hybrid"]["no_context"]
    assert len(engine.requests) == sent
