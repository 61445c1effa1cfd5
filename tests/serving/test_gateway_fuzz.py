"""Bad input, found by machine: every operation of the gateway's own OpenAPI schema is fuzzed
with schemathesis (data that fits the schema, data that does not, and bodies that are not JSON),
over the fake engine, with and without API keys. No answer may be a 5xx; every error must be in
OpenAI's shape and match the schema. Below it, hand-written garbage bodies that the fuzzer does
not reach on its own (invalid UTF-8, deep nesting, NaN, lone surrogates...)."""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import ApiKey, AuthConfig, GatewayConfig, GatewayState, create_app, hash_key
from serving.gateway.bodies import MAX_JSON_DEPTH
from tests.helpers.fuzz import Fuzzer, assert_openai_error
from tests.helpers.reliability import record
from tests.serving.fake_engine import FakeEngine

KEYS = AuthConfig(
    api_keys=(ApiKey(name="acme", sha256=hash_key("k-acme"), models=("voice",)),),
    admin_keys=(ApiKey(name="ops", sha256=hash_key("k-admin")),),
)
CALLERS = (
    {},
    {"Authorization": "Bearer k-admin"},
    {"Authorization": "Bearer k-acme"},
    {"Authorization": "Bearer k-wrong"},
    {"Authorization": "Basic k-admin"},
)
"""Each case goes with one of these: no key, the admin key, a key scoped to `voice`, bad ones."""
MODELS = ("voice", "base", "voice@v1", "voice@v2", "voice@v9", "brand")


def build_app(root, tiny_llama_dir, adapter_dirs, config: GatewayConfig):
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), max_rank=16)
    registry.register(adapter_dirs["a"], "voice", "v1")
    registry.register(adapter_dirs["b"], "voice", "v2", promote=False)
    engine = FakeEngine()
    client = EngineClient("http://fake-engine", transport=httpx.ASGITransport(engine.app))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), engine.base)
    return create_app(GatewayState.build(config, manager))


@pytest.mark.reliability
def test_schema_fuzz_finds_no_server_error_and_only_openai_errors(
    tmp_path, tiny_llama_dir, adapter_dirs
):
    """Every operation, with and without API keys: 100 valid and 60 invalid cases each, and 30
    bodies that are not JSON for those that take one (about 2,800 requests, ~20 s)."""
    started = time.perf_counter()
    fuzzer = Fuzzer(
        MODELS,
        CALLERS,
        max_examples={GenerationMode.POSITIVE: 100, GenerationMode.NEGATIVE: 60},
        raw_examples=30,
        adapter_dir=str(adapter_dirs["b"]),
    )
    operations = 0
    for variant, config in (("open", GatewayConfig()), ("keys", GatewayConfig(auth=KEYS))):
        app = build_app(tmp_path / variant, tiny_llama_dir, adapter_dirs, config)
        try:
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            operations = 0
            for result in schema.get_all_operations():
                fuzzer.operation(result.ok())
                operations += 1
        finally:
            shutdown_lifespans()  # from_asgi started the app; stop it as `with TestClient` would
    took = time.perf_counter() - started
    print(f"\n{fuzzer.cases} cases in {took:.1f} s: {dict(sorted(fuzzer.statuses.items()))}")
    assert {200, 201, 400, 401, 403, 404} <= set(fuzzer.statuses)  # it got past validation
    record(
        "Bad input",
        "Schema fuzz of the gateway (schemathesis, fake engine)",
        operations=operations,
        **fuzzer.figures(),
    )


# ---- garbage the fuzzer cannot send: its bodies are always well-formed JSON ---------------------

POST_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/admin/adapters",
    "/admin/adapters/voice/load",
    "/admin/adapters/voice/promote",
)
CHAT = b'{"model": "base", "messages": [{"role": "user", "content": "hi"}]'  # still open
DEEP = MAX_JSON_DEPTH


@pytest.fixture(scope="module")
def gateway(tiny_llama_dir, adapter_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("garbage")
    app = build_app(root, tiny_llama_dir, adapter_dirs, GatewayConfig(max_body_bytes=16384))
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"model": "\xff\xfe"}', "not valid JSON ('utf-8' codec can't decode"),
        (b"model=base&messages=hi", "not valid JSON"),
        (b'[{"model": "base"}]', "must be a JSON object, got list"),
        (b'"hello"', "must be a JSON object, got str"),
        (b"1e5", "must be a JSON object, got float"),
        (b"[" * 3000 + b"]" * 3000, f"more than {DEEP} levels deep"),  # json's own limit
        (CHAT + b', "x": ' + b"[" * DEEP + b"]" * DEEP + b"}", f"more than {DEEP} levels"),
        (CHAT + b', "x": NaN}', "NaN or an infinite number"),
        (CHAT + b', "x": -Infinity}', "NaN or an infinite number"),
        (CHAT + b', "x": 1e999}', "NaN or an infinite number"),
        (CHAT + b', "seed": ' + b"9" * 5000 + b"}", "Exceeds the limit (4300 digits)"),
        (CHAT + b', "user": "\\ud800"}', "unpaired UTF-16 surrogate"),
    ],
    ids=[
        "invalid-utf8",
        "form-encoded",
        "json-array",
        "json-string",
        "json-number",
        "nested-past-recursion-limit",
        "nested-past-depth-limit",
        "nan",
        "infinity",
        "number-overflowing-to-infinity",
        "integer-of-5000-digits",
        "unpaired-surrogate",
    ],
)
def test_garbage_bodies_get_an_openai_400_on_every_route(gateway, raw, words):
    """Regressions: NaN, infinities and unpaired surrogates were 500s (the engine request could
    not be serialized), nesting past Python's recursion limit a 500 (RecursionError)."""
    for route in POST_ROUTES:
        response = gateway.post(route, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (route, response.text)
        assert_openai_error(400, response.content, route)
        error = response.json()["error"]
        assert words in error["message"] and error["code"] == "invalid_request", (route, error)


def test_nesting_up_to_the_limit_is_served(gateway):
    nested = b"[" * (DEEP - 1) + b"]" * (DEEP - 1)  # with the body object: DEEP levels
    response = gateway.post("/v1/chat/completions", content=CHAT + b', "x": ' + nested + b"}")
    assert response.status_code == 200, response.text


def test_the_content_type_header_may_be_absent_but_never_another_type(gateway):
    """A page of another site can post text/plain and form bodies without a CORS preflight, so
    those are refused even when they hold JSON (415; curl -d needs --json). A raw body without
    the header is read as JSON (tests/serving/test_sites.py has the rest)."""
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
        refused = gateway.post(
            "/v1/chat/completions", content=CHAT + b"}", headers={"Content-Type": content_type}
        )
        assert refused.status_code == 415, (content_type, refused.text)
        assert "application/json" in refused.json()["error"]["message"]
    assert gateway.post("/v1/chat/completions", content=CHAT + b"}").status_code == 200
    form = gateway.post("/v1/chat/completions", data={"model": "base", "messages": "hi"})
    assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.reliability
def test_oversized_bodies_and_prompts_past_the_context_are_refused(gateway):
    """413 whether the body declares its length or streams it; 400 (from the engine, passed on)
    for a prompt longer than the model's context. The declared-length 413 on the chat route is
    in test_gateway.py::test_transport_level_mistakes."""
    limit = gateway.app.state.gateway.config.max_body_bytes
    big = CHAT + b', "user": "' + b"x" * limit + b'"}'
    sent = too_large = 0
    for route in POST_ROUTES:
        declared, chunked = big, iter([big[:1000], big[1000:]])  # no Content-Length
        for content, words in ((declared, f"of {len(big)} bytes"), (chunked, "body exceeds")):
            response = gateway.post(route, content=content)
            sent += 1
            assert response.status_code == 413, (route, response.text)
            assert_openai_error(413, response.content, route)
            error = response.json()["error"]
            assert error["code"] == "request_too_large" and words in error["message"], error
            too_large += 1
    words = " ".join(["word"] * 1100)  # under the body limit, over the fake engine's 1024
    past_context = 0
    for route, body in (
        (
            "/v1/chat/completions",
            {"model": "voice", "messages": [{"role": "user", "content": words}]},
        ),
        ("/v1/completions", {"model": "voice", "prompt": words}),
    ):
        response = gateway.post(route, json=body)
        sent += 1
        assert response.status_code == 400, response.text
        assert "maximum context length" in response.json()["error"]["message"]
        past_context += 1
    record(
        "Bad input",
        "Oversized bodies (declared and chunked) and prompts past the context (fake engine)",
        requests=sent,
        refused_413=too_large,
        refused_400_context=past_context,
    )


def test_openapi_declares_the_bodies_and_errors_the_routes_really_have(gateway):
    schema = gateway.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components  # validation errors are 400, OpenAI-shaped
    bodies = {
        "/v1/chat/completions": "ChatCompletionRequest",
        "/v1/completions": "CompletionRequest",
        "/admin/adapters": "RegisterBody",
        "/admin/adapters/{name}/load": "VersionBody",
        "/admin/adapters/{name}/unload": "VersionBody",
        "/admin/adapters/{name}/promote": "PromoteBody",
    }
    for path, model in bodies.items():
        post = schema["paths"][path]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"} and model in components
        assert post["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    assert "201" in schema["paths"]["/admin/adapters"]["post"]["responses"]
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(chat) == {"application/json", "text/event-stream"}
    assert set(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "/admin/adapters/{name}/{operation}" not in schema["paths"]
    unknown = gateway.post("/admin/adapters/voice/explode")
    assert unknown.status_code == 404 and "use one of load, unload, promote" in unknown.text
