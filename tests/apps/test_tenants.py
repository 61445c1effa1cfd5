"""Tenants stay apart: two apps with planted unique facts never see each other's knowledge, a
key scoped to one app cannot reach or list the other, and neither keys nor prompts reach the
logs at the default level."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi.testclient import TestClient

from hybrid.apps.app import open_pipeline
from hybrid.apps.composer import AppComposer
from hybrid.apps.spec import AppSpec
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
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
        pipelines.append(open_pipeline(spec, catalog))
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
        yield http, engine


def ask(http, tenant: str, app: str, question: str) -> httpx.Response:
    return http.post(
        "/v1/chat/completions",
        json={"model": app, "messages": [{"role": "user", "content": question}]},
        headers={"Authorization": f"Bearer {KEYS[tenant]}"},
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
    listed = http.get("/v1/models", headers={"Authorization": f"Bearer {KEYS['alpha']}"})
    assert [m["id"] for m in listed.json()["data"]] == ["alpha-app"]
    tenant = {"Authorization": f"Bearer {KEYS['alpha']}"}
    admin_routes = [("GET", "/admin/adapters"), ("POST", "/admin/adapters/x/unload")]
    statuses = [http.request(m, path, headers=tenant).status_code for m, path in admin_routes]
    statuses += [http.request(m, path).status_code for m, path in admin_routes]
    assert statuses == [403, 403, 401, 401]
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
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
