"""Tenants stay apart: two apps with planted unique facts never see each other's knowledge, a
key scoped to one app cannot reach or list the other, errors and answers show a key holder only
its own models and no server paths, an app's hidden prompt cannot be read back through engine
fields, and neither keys nor prompts reach the logs at the default level."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi.testclient import TestClient

from hybrid.apps.app import open_pipeline
from hybrid.apps.budget import PromptBudget
from hybrid.apps.composer import AppComposer
from hybrid.apps.spec import AppSpec
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.engine.protocol import bearer
from serving.gateway import ApiKey, AuthConfig, GatewayConfig, GatewayState, create_app, hash_key
from tests.helpers.reliability import record
from tests.serving.fake_engine import FakeEngine

FACTS = {
    "alpha": "The alpha vault access code is ZEBRA-7731 and it opens on Tuesdays.",
    "beta": "The beta vault access code is OTTER-4402 and it opens on Fridays.",
}
CODES = {"alpha": "ZEBRA-7731", "beta": "OTTER-4402"}
KEYS = {"alpha": "hy-alpha-secret-key", "beta": "hy-beta-secret-key"}
ADMIN_KEY = "hy-admin-secret-key"


@pytest.fixture
def tenants(tmp_path, tiny_llama_dir):
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=tmp_path / "chroma"))
    pipelines = []
    for tenant, fact in FACTS.items():
        docs = tmp_path / tenant
        docs.mkdir()
        (docs / "vault.md").write_text(f"# Vault\n\n{fact}")
        catalog.create(f"{tenant}-kb").ingest([docs], progress=False)
        spec = AppSpec(
            name=f"{tenant}-app",
            knowledge_base=f"{tenant}-kb",
            persona="You guard the vault.",
            retrieval={"min_similarity": -1.0},  # even weak matches: anything leaking would show
        )
        pipelines.append(open_pipeline(spec, catalog, PromptBudget(tiny_llama_dir, 1024)))
    engine = FakeEngine()
    client = EngineClient("http://fake", transport=httpx.ASGITransport(engine.app))
    registry = AdapterRegistry(tmp_path / "registry", describe_base(tiny_llama_dir), 16)
    manager = AdapterManager(registry, EngineSet([Replica(client)]), "base")
    auth = AuthConfig(
        api_keys=tuple(
            ApiKey(name=t, sha256=hash_key(k), models=(f"{t}-app",)) for t, k in KEYS.items()
        ),
        admin_keys=(ApiKey(name="ops", sha256=hash_key(ADMIN_KEY)),),
    )
    state = GatewayState.build(
        GatewayConfig(auth=auth), manager, composers=[AppComposer(pipelines, "base")]
    )
    assert not any(k in state.config.model_dump_json() for k in (*KEYS.values(), ADMIN_KEY))
    with TestClient(create_app(state)) as http:
        http.tmp_path = tmp_path
        yield http, engine


def ask(http, tenant: str, app: str, question: str) -> httpx.Response:
    return http.post(
        "/v1/chat/completions",
        json={"model": app, "messages": [{"role": "user", "content": question}]},
        headers=bearer(KEYS[tenant]),
    )


@pytest.mark.reliability
def test_knowledge_never_crosses_apps(tenants):
    http, engine = tenants
    asked = 0
    for tenant, other in (("alpha", "beta"), ("beta", "alpha")):
        answer = ask(http, tenant, f"{tenant}-app", f"What is the {other} vault access code?")
        assert answer.status_code == 200
        prompt = engine.requests[-1]["messages"][0]["content"]
        assert FACTS[tenant] in prompt and FACTS[other] not in prompt
        sources = " ".join(s["snippet"] for s in answer.json()["hybrid"]["sources"])
        assert CODES[other] not in sources and CODES[tenant] in sources
        asked += 1
    record(
        "Tenants and keys",
        "Two apps with planted unique facts, each asked for the other's fact",
        questions=asked,
        leaks=0,
    )


@pytest.mark.reliability
def test_a_scoped_key_cannot_reach_or_see_the_other_app(tenants):
    http, _ = tenants
    denied = ask(http, "alpha", "beta-app", "What is the beta vault access code?")
    assert denied.status_code == 404 and denied.json()["error"]["code"] == "model_not_found"
    listed = http.get("/v1/models", headers=bearer(KEYS["alpha"]))
    assert [m["id"] for m in listed.json()["data"]] == ["alpha-app"]
    tenant = bearer(KEYS["alpha"])
    admin_routes = [("GET", "/admin/adapters"), ("POST", "/admin/adapters/x/unload")]
    statuses = [http.request(m, path, headers=tenant).status_code for m, path in admin_routes]
    statuses += [http.request(m, path).status_code for m, path in admin_routes]
    assert statuses == [403, 403, 401, 401]
    admin = bearer(ADMIN_KEY)
    assert http.get("/admin/adapters", headers=admin).status_code == 200
    record(
        "Tenants and keys",
        "Key scoped to app A asks for app B, lists models, calls admin routes; keys stored "
        "as sha256 only",
        other_app_status=denied.status_code,
        other_app_listed=False,
        admin_with_tenant_key=403,
        admin_without_key=401,
    )


@pytest.mark.reliability
def test_keys_and_prompts_stay_out_of_the_logs(tenants, caplog):
    http, _ = tenants
    caplog.set_level(logging.INFO)  # the default level is WARNING; INFO is stricter still
    secret_question = "Please tell me the alpha vault code, my passphrase is PELICAN-0917"
    assert ask(http, "alpha", "alpha-app", secret_question).status_code == 200
    assert ask(http, "alpha", "beta-app", secret_question).status_code == 404
    http.post(
        "/v1/chat/completions",
        json={"model": "alpha-app", "messages": []},
        headers={"Authorization": "Bearer hy-wrong-key-123"},
    )
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert len(caplog.records) >= 3, "nothing was logged: the check would prove nothing"
    for secret in (*KEYS.values(), "hy-wrong-key-123", "PELICAN-0917"):
        assert secret not in logged
    record(
        "Tenants and keys",
        "Keys (valid, wrong) and a prompt with a passphrase, logs read at INFO",
        log_lines=len(caplog.records),
        secrets_in_logs=0,
    )


PERSONA = "You guard the vault."
PROMPT_FIELDS = {  # vLLM fields that return, or rebuild, the prompt the engine sees
    "prompt_logprobs": 1,
    "echo": True,
    "return_token_ids": True,
    "return_prompt_text": True,
    "chat_template": "{{ messages }}",
    "continue_final_message": True,
    "truncate_prompt_tokens": 5,
}


@pytest.mark.reliability
def test_errors_and_answers_show_a_tenant_only_its_own(tenants):
    http, engine = tenants
    alpha = bearer(KEYS["alpha"])
    leaks: list[str] = []
    probes = 0
    others = ("beta-app", "'base'", "voice", str(http.tmp_path))
    for model in ("alpha-app@x", "nope", "beta-app", "base", "beta-app@v1"):
        response = http.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            headers=alpha,
        )
        probes += 1
        assert response.status_code == 404, (model, response.text)
        message = response.json()["error"]["message"]
        assert "models you may use: alpha-app (GET /v1/models)" in message, message
        told = message.replace(f"model '{model}'", "")  # the client's own words, echoed
        leaks += [f"{model}: {o}" for o in others if o in told]
    retrieved = http.get("/v1/models/beta-app", headers=alpha)
    assert retrieved.status_code == 404 and "beta-app'" in retrieved.json()["error"]["message"]
    probes += 1

    ready = http.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert http.get("/ready", headers=alpha).json() == {"ready": True}
    full = http.get("/ready", headers=bearer(ADMIN_KEY)).json()
    assert full["engines"][0]["url"] == "http://fake"  # an admin sees the engines
    probes += 2

    answer = ask(http, "alpha", "alpha-app", "What is the alpha vault access code?").json()
    notes = answer["hybrid"]
    cited = [*notes["sources"], *notes["citations"]]
    assert cited and {c["source"] for c in cited} == {"vault.md"}, cited
    leaks += [c["source"] for c in cited if str(http.tmp_path) in json.dumps(c)]
    probes += 1

    asked = len(engine.requests)
    for field, value in PROMPT_FIELDS.items():
        response = http.post(
            "/v1/chat/completions",
            json={
                "model": "alpha-app",
                "messages": [{"role": "user", "content": "What is the vault code?"}],
                field: value,
            },
            headers=alpha,
        )
        probes += 1
        assert response.status_code == 400, (field, response.text)
        error = response.json()["error"]
        assert error["param"] == field and f"does not accept '{field}'" in error["message"]
        if PERSONA in response.text or "ZEBRA" in response.text:
            leaks.append(field)
    assert len(engine.requests) == asked, "a refused field still reached the engine"
    sampling = {"temperature": 0.2, "top_k": 5, "logprobs": True, "top_logprobs": 2, "seed": 1}
    allowed = ask_with(http, alpha, **sampling)
    assert allowed.status_code == 200, allowed.text
    assert {k: engine.requests[-1][k] for k in sampling} == sampling
    assert not leaks, leaks
    record(
        "Tenants and keys",
        "Tenant leaks: key for app A asks for unknown and others' models (A@x, B, base), "
        "/ready without an admin key, source paths in answers, engine fields that echo the "
        "prompt (prompt_logprobs, echo, return_token_ids, ...)",
        probes=probes,
        leaks=len(leaks),
        prompt_fields_refused=len(PROMPT_FIELDS),
    )


def ask_with(http, headers, messages=None, **fields) -> httpx.Response:
    messages = messages or [{"role": "user", "content": "What is the alpha vault code?"}]
    body = {"model": "alpha-app", "messages": messages, **fields}
    return http.post("/v1/chat/completions", json=body, headers=headers)


def test_app_requests_with_content_parts_and_tool_call_turns(tenants):
    http, engine = tenants
    alpha = bearer(KEYS["alpha"])
    parts = [{"type": "text", "text": "What is the alpha"}, {"type": "text", "text": "vault code?"}]
    french = [{"type": "text", "text": "Answer in French."}]
    response = ask_with(
        http, alpha, [{"role": "system", "content": french}, {"role": "user", "content": parts}]
    )
    assert response.status_code == 200, response.text
    system = engine.requests[-1]["messages"][0]["content"]
    assert FACTS["alpha"] in system and system.endswith("Answer in French.")
    assert engine.requests[-1]["messages"][-1]["content"] == parts  # sent on as the client wrote
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"vault": "alpha"})},
        }
    ]
    conversation = [
        {"role": "user", "content": "Look up the alpha vault."},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "vault found"},
        {"role": "user", "content": [{"type": "text", "text": "And its access code?"}]},
    ]
    response = ask_with(http, alpha, conversation)
    assert response.status_code == 200, response.text
    assert engine.requests[-1]["messages"][2]["tool_calls"] == calls


def test_max_tokens_beyond_the_context_gets_the_engines_400(tenants):
    http, engine = tenants
    alpha = bearer(KEYS["alpha"])
    asked = len(engine.requests)
    for field, value in (("max_tokens", 1e9), ("max_completion_tokens", 1024)):
        response = ask_with(http, alpha, **{field: value})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "maximum context length is 1024 tokens" in error["message"], error
        assert error["param"] == field and error["code"] == "context_length_exceeded"
    assert len(engine.requests) == asked
    fits = ask_with(http, alpha, max_tokens=500)  # the prompt takes ~230 tiny-model tokens
    assert fits.status_code == 200, fits.text
    assert len(engine.requests) == asked + 1
    assert FACTS["alpha"] in engine.requests[-1]["messages"][0]["content"]


def test_source_names_tell_same_named_files_apart_without_server_paths():
    from hybrid.apps.fields import public_sources

    cited = [
        {"source": "/srv/kb/eu/terms.md"},
        {"source": "/srv/kb/us/terms.md"},
        {"source": "/srv/kb/eu/terms.md"},
        {"source": "/srv/kb/faq.md"},
    ]
    public_sources(cited)
    assert [c["source"] for c in cited] == ["eu/terms.md", "us/terms.md", "eu/terms.md", "faq.md"]


def test_every_generation_route_keeps_a_tenant_to_its_own_app(tenants):
    """Not only chat: legacy completions, embeddings and the Responses API, with the other
    app, the base model or the app's own name under another route's body shape, are refused
    before the engine is asked, and the refusal names only the tenant's own app."""
    http, engine = tenants
    alpha = bearer(KEYS["alpha"])
    asked = len(engine.requests)
    bodies = {
        "/v1/completions": lambda m: {"model": m, "prompt": "The beta vault code is"},
        "/v1/embeddings": lambda m: {"model": m, "input": "beta vault"},
        "/v1/responses": lambda m: {"model": m, "input": "What is the beta vault code?"},
        "/v1/chat/completions": lambda m: {
            "model": m,
            "messages": [{"role": "user", "content": "What is the beta vault code?"}],
        },
    }
    for route, body in bodies.items():
        for model in ("beta-app", "base", "beta-app@v1", "BETA-APP", " beta-app"):
            response = http.post(route, json=body(model), headers=alpha)
            assert response.status_code in (400, 404), (route, model, response.text)
            text = response.text.replace(json.dumps(model)[1:-1], "")
            assert "beta" not in text.lower() and CODES["beta"] not in text, (route, model, text)
    assert len(engine.requests) == asked, "a refused request reached the engine"
