"""The gateway's logic in seconds, over an in-process fake vLLM (tests/serving/fake_engine.py):
routing by `model`, streaming relay, the composer hook, errors in OpenAI's shape, API keys,
metrics, and promote/unload draining. The same paths run against the real vLLM in
test_gateway_vllm.py."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.adapters.manager import AdapterBusy, AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import (
    ApiKey,
    AuthConfig,
    GatewayConfig,
    GatewayState,
    ModelInfo,
    PreparedChat,
    create_app,
    hash_key,
)
from tests.serving.fake_engine import FakeEngine

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def registry(voice_registry):
    return voice_registry  # conftest: voice v1 (current) and v2


def make_manager(registry, engine: FakeEngine, **kwargs) -> AdapterManager:
    client = EngineClient("http://fake-engine", transport=httpx.ASGITransport(engine.app))
    return AdapterManager(registry, EngineSet([Replica(client)]), engine.base, **kwargs)


def make_client(registry, engine=None, config=None, composers=()) -> TestClient:
    engine = engine or FakeEngine()
    state = GatewayState.build(
        config or GatewayConfig(), make_manager(registry, engine), composers=composers
    )
    return TestClient(create_app(state))


def chat(client: TestClient, model: str, headers=None, **extra) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers or {})


def sse_chunks(response: httpx.Response) -> list:
    lines = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def test_model_field_routes_to_base_alias_and_version(registry):
    with make_client(registry) as client:
        assert (
            chat(client, "base").json()["choices"][0]["message"]["content"].startswith("base says")
        )
        alias = chat(client, "voice").json()
        assert alias["model"] == "voice@v1"
        assert alias["choices"][0]["message"]["content"] == "voice@v1 says: hello there"
        assert chat(client, "voice@v2").json()["model"] == "voice@v2"
        models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert set(models) == {"base", "voice", "voice@v1", "voice@v2"}
        assert models["voice"]["parent"] == "base" and models["voice"]["root"] == "voice@v1"
        assert models["voice@v1"]["hybrid"] == {
            "kind": "adapter_version",
            "loaded": True,
            "current": True,
        }
        assert client.get("/v1/models/voice@v2").json()["id"] == "voice@v2"


def test_stream_relays_chunks_and_usage_only_when_asked(registry):
    with make_client(registry) as client:
        plain = sse_chunks(chat(client, "voice", stream=True))
        assert plain[-1] == "[DONE]"
        text = "".join(c["choices"][0]["delta"]["content"] for c in plain[:-1])
        assert text == "voice@v1 says: hello there"
        assert all("usage" not in c for c in plain[:-1])
        with_usage = sse_chunks(
            chat(client, "voice", stream=True, stream_options={"include_usage": True})
        )
        assert with_usage[-2]["choices"] == [] and with_usage[-2]["usage"]["completion_tokens"] == 4
        metrics = client.get("/metrics").text
        assert (
            'hybrid_tokens_total{kind="completion",model="voice",served="voice@v1"} 8.0' in metrics
        )


def test_unknown_models_are_counted_under_one_label(registry):
    with make_client(registry) as client:
        for name in ("made-up-1", "made-up-2", "voice@v9"):
            assert chat(client, name).status_code == 404
        metrics = client.get("/metrics").text
    line = 'hybrid_requests_total{model="(unknown)",route="/v1/chat/completions",status="404"} 3.0'
    assert line in metrics
    assert "made-up" not in metrics and "voice@v9" not in metrics


def test_prompt_logprobs_through_an_adapter_are_refused_before_the_engine(registry):
    engine = FakeEngine()
    with make_client(registry, engine) as client:
        refused = chat(client, "voice", prompt_logprobs=1)
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "prompt_logprobs"
        assert "base model only" in refused.json()["error"]["message"]
        plain = client.post(
            "/v1/completions", json={"model": "voice@v2", "prompt": "hi", "prompt_logprobs": 0}
        )
        assert plain.status_code == 400
        # echo with logprobs is prompt logprobs in vLLM: the same crash, refused the same way
        echoed = {"model": "voice", "prompt": ["", "hi"], "echo": True, "logprobs": 0}
        refused = client.post("/v1/completions", json=echoed)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "echo"
        assert "echo with logprobs" in refused.json()["error"]["message"]
        assert not any(r.get("prompt_logprobs") is not None for r in engine.requests)
        assert not any(r.get("echo") for r in engine.requests)
        no_logprobs = {"model": "voice", "prompt": "hi", "echo": True}
        assert client.post("/v1/completions", json=no_logprobs).status_code == 200
        assert chat(client, "base", prompt_logprobs=1).status_code == 200  # the base: served


def test_completions_route(registry):
    with make_client(registry) as client:
        answer = client.post("/v1/completions", json={"model": "voice", "prompt": "hi"}).json()
        assert answer["choices"][0]["text"] == "voice@v1 says: hi"


class EchoComposer:
    """A composed model: rewrites the request to the adapter and annotates the answer."""

    def models(self):
        return [ModelInfo("helpdesk", parent="base", kind="app")]

    def owns(self, model: str) -> bool:
        return model == "helpdesk"

    async def prepare(self, request, body):
        messages = [{"role": "system", "content": "be brief"}, *body["messages"]]

        def annotate(texts: list[str]) -> dict:
            return {"lengths": [len(t) for t in texts]}

        return PreparedChat("voice", {**body, "messages": messages}, "helpdesk", annotate)


def test_composer_rewrites_the_request_and_annotates_answers(registry):
    engine = FakeEngine()
    with make_client(registry, engine, composers=[EchoComposer()]) as client:
        assert "helpdesk" in {m["id"] for m in client.get("/v1/models").json()["data"]}
        answer = chat(client, "helpdesk").json()
        assert answer["model"] == "helpdesk"
        assert answer["hybrid"] == {
            "served_by": "voice@v1",
            "lengths": [len("voice@v1 says: hello there")],
        }
        assert engine.requests[-1]["messages"][0] == {"role": "system", "content": "be brief"}
        chunks = sse_chunks(chat(client, "helpdesk", stream=True))
        assert chunks[-1] == "[DONE]" and chunks[-2]["choices"] == []
        assert chunks[-2]["hybrid"]["lengths"] == [len("voice@v1 says: hello there")]
        assert chunks[-2]["hybrid"]["served_by"] == "voice@v1"
        assert {c["model"] for c in chunks[:-1]} == {"helpdesk"}
        refused = client.post("/v1/completions", json={"model": "helpdesk", "prompt": "x"})
        assert refused.status_code == 400 and "chat app" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"model": "voice"}, 400, "messages", "'messages' is a required property"),
        ({"model": "voice", "messages": []}, 400, "messages", "at least 1"),
        ({"model": "voice", "messages": [{"role": "robot"}]}, 400, "messages.0.role", "Input"),
        ({"model": "voice", "messages": MESSAGES, "temperature": 3}, 400, "temperature", "2"),
        ({"model": "voice", "messages": MESSAGES, "n": 0}, 400, "n", "greater"),
        ({"model": "voice", "messages": MESSAGES, "stream_options": {}}, 400, None, "stream"),
        ({"model": "nope", "messages": MESSAGES}, 404, "model", "may use: base, voice@v1, voi"),
        ({"model": "voice@v7", "messages": MESSAGES}, 404, "model", "voice@v1, voice@v2, voice"),
        ({"model": "voice", "messages": MESSAGES, "max_tokens": 5000}, 400, None, "context"),
        ({"model": "voice", "messages": MESSAGES, "max_tokens": 10**30}, 400, None, "context"),
        ({"model": "voice", "messages": MESSAGES, "max_tokens": -1}, 400, "max_tokens", "greater"),
        ({"model": "voice", "messages": [{"role": "user", "content": 7}]}, 400, None, "string"),
        ({"model": "voice", "messages": "hello"}, 400, "messages", "valid list"),
        ({"model": None, "messages": MESSAGES}, 400, "model", "valid string"),
        ([1, 2], 400, None, "JSON object"),
    ],
)
def test_bad_requests_get_openai_errors(registry, body, status, param, words):
    with make_client(registry) as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert words in error["message"]
    if param:
        assert error["param"] == param


def test_transport_level_mistakes(registry):
    config = GatewayConfig(max_body_bytes=2048)
    with make_client(registry, config=config) as client:
        bad_json = client.post("/v1/chat/completions", content=b"{oops")
        assert bad_json.status_code == 400 and "not valid JSON" in bad_json.text
        huge = client.post(
            "/v1/chat/completions",
            json={"model": "voice", "messages": [{"role": "user", "content": "x" * 5000}]},
        )
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
        assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
        assert client.get("/v1/chat/completions").status_code == 405


def test_errors_do_not_echo_huge_client_input(registry):
    from serving.gateway.errors import MAX_MESSAGE_CHARS

    path = "/nowhere/" + "m" * 100_000
    with make_client(registry) as client:
        response = client.post("/admin/adapters", json={"path": path, "name": "big"})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert len(message) == MAX_MESSAGE_CHARS and message.endswith("…")


def test_engine_down_is_503_with_retry_after(registry):
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    state = GatewayState.build(
        GatewayConfig(),
        AdapterManager(
            registry,
            EngineSet(
                [Replica(EngineClient("http://down", transport=httpx.MockTransport(refuse)))]
            ),
            "base",
        ),
    )
    with TestClient(create_app(state)) as client:
        response = chat(client, "base")
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert response.json()["error"]["code"] == "engine_unavailable"
        assert "Traceback" not in response.text
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False


def test_api_keys_scopes_and_admin(registry):
    auth = AuthConfig(
        api_keys=(
            ApiKey(name="acme", sha256=hash_key("k-acme"), models=("voice",)),
            ApiKey(name="all", sha256=hash_key("k-all")),
        ),
        admin_keys=(ApiKey(name="ops", sha256=hash_key("k-admin")),),
    )
    with make_client(registry, config=GatewayConfig(auth=auth)) as client:
        assert chat(client, "voice").status_code == 401
        assert chat(client, "voice", {"Authorization": "Bearer wrong"}).status_code == 401
        acme = {"Authorization": "Bearer k-acme"}
        assert chat(client, "voice", acme).status_code == 200
        assert chat(client, "voice@v2", acme).status_code == 200
        denied = chat(client, "base", acme)
        assert denied.status_code == 404 and denied.json()["error"]["code"] == "model_not_found"
        seen = {m["id"] for m in client.get("/v1/models", headers=acme).json()["data"]}
        assert seen == {"voice", "voice@v1", "voice@v2"}
        assert client.get("/admin/adapters", headers=acme).status_code == 403
        assert client.get("/metrics", headers={"Authorization": "Bearer k-all"}).status_code == 403
        admin = {"Authorization": "Bearer k-admin"}
        assert client.get("/admin/adapters", headers=admin).status_code == 200
        assert client.get("/metrics", headers=admin).status_code == 200


def test_the_key_is_checked_before_the_body(registry):
    """The body is read before the route runs (typed bodies), but its problems are answered
    after the caller's: no key gets 401 and a plain key on an admin route 403, whatever the
    body holds; a known key then gets the body's own 400."""
    auth = AuthConfig(
        api_keys=(ApiKey(name="acme", sha256=hash_key("k-acme")),),
        admin_keys=(ApiKey(name="ops", sha256=hash_key("k-admin")),),
    )
    acme, admin = {"Authorization": "Bearer k-acme"}, {"Authorization": "Bearer k-admin"}
    with make_client(registry, config=GatewayConfig(auth=auth)) as client:
        for body in (b"{oops", b"[1]", b'{"model": "voice"}', b'{"x": NaN}'):
            keyless = client.post("/v1/chat/completions", content=body)
            assert keyless.status_code == 401, (body, keyless.text)
            refused = client.post("/admin/adapters", content=body, headers=acme)
            assert refused.status_code == 403, (body, refused.text)
        messages = {
            b"{oops": "the request body is not valid JSON (Expecting property name",
            b"[1]": "the request body must be a JSON object, got list",
            b'{"model": "voice"}': "'messages' is a required property",
            b'{"x": NaN}': "holds NaN or an infinite number",
        }
        for body, words in messages.items():
            answer = client.post("/v1/chat/completions", content=body, headers=acme)
            assert answer.status_code == 400 and words in answer.json()["error"]["message"]
        empty = client.post("/admin/adapters", headers=admin)
        assert empty.status_code == 400
        assert "must be a JSON object, got NoneType" in empty.json()["error"]["message"]
        bad = client.post("/admin/adapters", json={"path": "/x", "promote": "maybe"}, headers=admin)
        error = bad.json()["error"]
        assert bad.status_code == 400 and error["param"] == "name", error
        assert error["message"] == "'name' is a required property (and 1 more problem(s))"


def test_keys_are_required_off_loopback():
    with pytest.raises(ValueError, match="not loopback and no API keys"):
        GatewayConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="64 hex characters"):
        ApiKey(name="x", sha256="plain-key")
    GatewayConfig(host="0.0.0.0", auth=AuthConfig(api_keys=(ApiKey(name="x", sha256="a" * 64),)))


def test_key_fields_that_would_be_ignored_are_refused(tmp_path):
    """An admin key may use every model: a `models` list there was silently ignored."""
    scoped_admin = ApiKey(name="ops", sha256="a" * 64, models=("voice",))
    with pytest.raises(ValueError, match=r"admin_keys \['ops'\] list 'models'.*api_keys"):
        AuthConfig(admin_keys=(scoped_admin,))
    with pytest.raises(ValueError, match=r"model\n.*Extra inputs are not permitted"):
        ApiKey.model_validate({"name": "site", "sha256": "b" * 64, "model": ["voice"]})
    from hybrid.config import load_config
    from hybrid.errors import HybridError

    config = tmp_path / "hybrid.yaml"
    config.write_text(
        "gateway:\n  auth:\n    admin_keys:\n"
        f"      - {{name: ops, sha256: {'a' * 64}, models: [voice]}}\n"
    )
    with pytest.raises(HybridError, match=r"gateway\.auth: admin_keys \['ops'\] list 'models'"):
        load_config(config)


def test_admin_register_load_promote_unload(registry, adapter_dirs):
    engine = FakeEngine()
    with make_client(registry, engine) as client:
        created = client.post(
            "/admin/adapters", json={"path": str(adapter_dirs["b"]), "name": "brand"}
        )
        assert created.status_code == 201 and created.json()["id"] == "brand@v1"
        assert client.post("/admin/adapters/brand/load").json()["id"] == "brand@v1"
        assert "brand@v1" in engine.adapters
        promoted = client.post("/admin/adapters/voice/promote", json={"version": "v2"}).json()
        assert promoted == {
            "name": "voice",
            "previous": "v1",
            "current": "v2",
            "previous_unloading": False,  # v1 was never loaded
        }
        assert chat(client, "voice").json()["model"] == "voice@v2"
        assert client.post("/admin/adapters/brand/unload").json() == {"unloaded": ["brand@v1"]}
        assert "brand@v1" not in engine.adapters
        again = client.post("/admin/adapters/brand/unload")
        assert again.status_code == 404 and "not loaded" in again.json()["error"]["message"]
        wrong = client.post("/admin/adapters/brand/explode")
        assert wrong.status_code == 404
        missing = client.post("/admin/adapters", json={"path": "/nowhere", "name": "x"})
        assert missing.status_code == 422 and "not found" in missing.json()["error"]["message"]
        typo = client.post("/admin/adapters/voice/promote", json={"versoin": "v1"})
        assert typo.status_code == 400
        operations = client.get("/metrics").text
        assert 'hybrid_adapter_operations_total{operation="promote",outcome="ok"} 1.0' in operations


def test_promote_keeps_in_flight_requests_on_the_old_version(registry):
    engine = FakeEngine()
    manager = make_manager(registry, engine)

    async def scenario():
        old = await manager.lease("voice")
        assert old.target.engine_name == "voice@v1" and "voice@v1" in engine.adapters
        promotion = await manager.promote("voice", "v2")
        assert promotion.retiring
        new = await manager.lease("voice")
        assert new.target.engine_name == "voice@v2"
        await asyncio.sleep(0.2)
        assert "voice@v1" in engine.adapters  # still draining: the old lease holds it
        old.release()
        await manager.settle()
        assert "voice@v1" not in engine.adapters and "voice@v2" in engine.adapters
        new.release()
        await manager.engines.aclose()

    asyncio.run(scenario())


def test_unload_waits_for_requests_and_times_out_busy(registry):
    engine = FakeEngine()
    manager = make_manager(registry, engine)

    async def scenario():
        lease = await manager.lease("voice")
        with pytest.raises(AdapterBusy, match="1 request"):
            await manager.unload("voice", timeout_s=0.3)
        assert "voice@v1" in engine.adapters
        unload = asyncio.create_task(manager.unload("voice", timeout_s=10))
        await asyncio.sleep(0.2)
        assert not unload.done()
        lease.release()
        assert await unload == ["voice@v1"]
        relet = await manager.lease("voice")  # loads it again on demand
        assert "voice@v1" in engine.adapters
        relet.release()
        await manager.engines.aclose()

    asyncio.run(scenario())


class SwitchableTransport(httpx.AsyncBaseTransport):
    """The fake engine's ASGI app, or a refused connection while `engine.down` is set."""

    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.inner = httpx.ASGITransport(engine.app)

    async def handle_async_request(self, request):
        if getattr(self.engine, "down", False):
            raise httpx.ConnectError("connection refused")
        return await self.inner.handle_async_request(request)


def test_replicas_route_to_the_holder_and_load_elsewhere_when_it_is_down(registry):
    first, second = FakeEngine(), FakeEngine()
    replicas = [
        Replica(EngineClient(f"http://engine-{i}", transport=SwitchableTransport(engine)))
        for i, engine in enumerate((first, second))
    ]
    second.adapters["voice@v1"] = "/already/there"  # loaded by someone before we started
    state = GatewayState.build(
        GatewayConfig(), AdapterManager(registry, EngineSet(replicas), "base")
    )
    with TestClient(create_app(state)) as client:
        assert chat(client, "voice").status_code == 200
        assert len(second.requests) == 1 and first.requests == []  # the holder served it
        assert chat(client, "voice@v2").status_code == 200  # not held: the emptier replica loads
        assert "voice@v2" in first.adapters and len(first.requests) == 1
        second.down = True
        answer = chat(client, "voice")  # refused: retried on the healthy one, loaded there
        assert answer.status_code == 200 and "voice@v1" in first.adapters
        assert len(second.requests) == 1
        first.down = True
        down = chat(client, "voice")
        assert down.status_code == 503 and down.json()["error"]["code"] == "engine_unavailable"
        first.down = False
        second.down = False
        assert client.get("/ready").json()["engines"][1]["healthy"] is True


def test_backpressure_answers_429_past_the_limit_and_recovers(registry):
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers.gateway import ServerThread

    engine = FakeEngine(delay_s=1.0)
    state = GatewayState.build(
        GatewayConfig(max_pending_requests=2), make_manager(registry, engine)
    )
    with ServerThread(create_app(state)) as server:

        def one(_):
            body = {"model": "voice", "messages": MESSAGES}
            return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(one, range(6)))
        codes = sorted(a.status_code for a in answers)
        assert codes.count(200) >= 2 and 429 in codes, codes
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert one(0).status_code == 200  # load dropped: served again
        assert state.inference.admission.active == 0


def test_stream_relay_keeps_unicode_line_breaks_inside_events(registry):
    """Generated text may hold U+2028, U+0085 or U+000B raw inside a JSON event; only \\n ends an
    SSE line, so the relay must not cut the event there."""
    engine = FakeEngine()
    engine.reply = "odd\u2028line\x85breaks\x0bhere"
    with make_client(registry, engine) as client:
        chunks = sse_chunks(chat(client, "voice", stream=True))
        text = "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1])
        assert text == "odd\u2028line\x85breaks\x0bhere" and chunks[-1] == "[DONE]"


def test_streams_reuse_their_engine_connection(registry):
    """A stream is read to its end after [DONE], so its connection to the engine serves the
    next request (a connection whose response was not read to the end is dropped; a new one
    per streamed request cost the gateway more than relaying the stream)."""
    from tests.helpers.gateway import ServerThread

    engine = FakeEngine()
    with ServerThread(engine.app) as server:
        replica = Replica(EngineClient(server.url))
        state = GatewayState.build(
            GatewayConfig(), AdapterManager(registry, EngineSet([replica]), engine.base)
        )
        with TestClient(create_app(state)) as client:
            for model in ["base", "voice"] * 4:
                chunks = sse_chunks(chat(client, model, stream=True))
                assert chunks[-1] == "[DONE]"
                assert "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1]) == (
                    f"{'voice@v1' if model == 'voice' else 'base'} says: hello there"
                )
    assert len(engine.connections) == 1, engine.connections  # one after the other: one


def test_a_stream_the_client_closes_after_done_counts_as_answered(registry):
    """The gateway reads the engine's body to its end after [DONE]; a client that hangs up
    meanwhile has its whole answer: counted as answered (200), not as a disconnect."""
    from tests.helpers.gateway import ServerThread

    engine = FakeEngine()
    engine.done_tail_s = 0.5
    with ServerThread(engine.app) as server:
        replica = Replica(EngineClient(server.url))
        state = GatewayState.build(
            GatewayConfig(), AdapterManager(registry, EngineSet([replica]), engine.base)
        )
        with ServerThread(create_app(state)) as gateway, httpx.Client(base_url=gateway.url) as http:
            body = {"model": "base", "messages": MESSAGES, "stream": True}
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                assert "data: [DONE]" in response.iter_lines()  # then the connection is dropped
            time.sleep(1.5)
            metrics = httpx.get(gateway.url + "/metrics").text
    line = 'hybrid_requests_total{model="base",route="/v1/chat/completions",status="200"} 1.0'
    assert line in metrics
    assert 'hybrid_client_disconnects_total{model="base"}' not in metrics


def test_stream_chunks_with_nothing_to_change_pass_unchanged(registry):
    """After the first token, a chunk that needs no rewriting reaches the client as the engine
    wrote it; one with a field to drop, usage or non-ASCII text (a raw U+2028 would cut some
    clients' lines) is still rewritten."""
    engine = FakeEngine()
    chunk = '{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "base", '
    events = [
        chunk + '"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}',
        chunk + '"system_fingerprint": null, "choices": [{"index": 0, "delta": {"content": '
        '" there"}, "finish_reason": null}]}',
        chunk + '"choices": [{"index": 0, "delta": {"content": " caf\u00e9", "tool_calls": '
        'null}, "finish_reason": null}]}',
        chunk + '"choices": [{"index": 0, "delta": {"content": " \u2028"}, '
        '"finish_reason": null}]}',
        chunk + '"choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]}',
        chunk + '"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 5, '
        '"total_tokens": 7, "prompt_tokens_details": null}}',
        "[DONE]",
    ]

    async def streaming(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            await receive()
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for event in events:
                data = f"data: {event}\n\n".encode()
                await send({"type": "http.response.body", "body": data, "more_body": True})
            return await send({"type": "http.response.body", "body": b""})
        return await engine.app(scope, receive, send)

    client = EngineClient("http://engine", transport=httpx.ASGITransport(streaming))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), engine.base)
    with TestClient(create_app(GatewayState.build(GatewayConfig(), manager))) as http:
        response = chat(http, "base", stream=True)
    lines = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert all(line.isascii() for line in lines)
    sent = [json.loads(line) for line in lines[:-1]]
    assert "system_fingerprint" not in sent[1]  # dropped when null, after the first token too
    assert "tool_calls" not in sent[2]["choices"][0]["delta"]
    assert [c["choices"][0]["delta"]["content"] for c in sent] == [
        "Hi",
        " there",
        " café",
        " \u2028",
        "!",
    ]
    assert lines[4] == events[4]  # nothing to change: the engine's own bytes
    assert lines[0] != events[0] and lines[-1] == "[DONE]"  # the first is parsed (first token)
    assert len(sent) == 5  # usage was not asked for


def test_keys_new_refuses_a_scoped_admin_key(capsys):
    from hybrid.cli import main

    assert main(["keys", "new", "--name", "ops", "--admin", "--model", "voice"]) == 2
    assert "--model does not apply" in capsys.readouterr().err
    assert main(["keys", "new", "--name", "site", "--model", "voice"]) == 0
    assert "models:\n  - voice" in capsys.readouterr().out


def test_a_failed_on_demand_load_names_no_engine_url_or_path(registry, caplog):
    """The engine's refusal names its URL and the adapter folder: logged, not told to clients."""
    from tests.serving.fake_engine import vllm_error

    engine = FakeEngine()

    async def refusing(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/load_lora_adapter":
            refusal = vllm_error(400, "Loading lora voice@v1 failed: bad weights")
            return await refusal(scope, receive, send)
        return await engine.app(scope, receive, send)

    client = EngineClient("http://engine.internal:8000", transport=httpx.ASGITransport(refusing))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), engine.base)
    auth = AuthConfig(api_keys=(ApiKey(name="t", sha256=hash_key("k-t"), models=("voice",)),))
    state = GatewayState.build(GatewayConfig(auth=auth), manager)
    with TestClient(create_app(state)) as http:
        response = chat(http, "voice", {"Authorization": "Bearer k-t"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (
        error["code"] == "adapter_load_failed" and "'voice' could not be loaded" in error["message"]
    )
    folder = str(registry.resolve("voice").adapter.path)
    for secret in ("engine.internal", folder, str(registry.root)):
        assert secret not in response.text
    assert "engine.internal" in caplog.text  # the operator still learns why
