"""The merged fast path's decisions in seconds, over in-process fake engines: which requests a
merged engine takes (the adapter's current version, by name, pinned, streamed), when they fall
back to the LoRA path (a promote, an engine that does not answer, one that serves other
weights), what the admin API and /ready say, and the one-line refusals at start and in the
config. The same path runs against two real vLLM servers in test_merged_fast_path_vllm.py."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.adapters.files import adapter_digest
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, ModelCard, Replica, ReplicaState, choose_merged
from serving.engine.merged import digest_name, merged_problem, served_names
from serving.gateway import GatewayConfig, GatewayState, create_app
from tests.serving.fake_engine import FakeEngine
from tests.serving.test_gateway import MESSAGES, SwitchableTransport, chat, sse_chunks


@pytest.fixture
def registry(voice_registry):
    return voice_registry  # conftest: voice v1 (current) and v2


def digest_of(registry, ref: str) -> str:
    return adapter_digest(registry.resolve(ref).adapter.path)


def merged_engine_for(registry, ref: str) -> FakeEngine:
    """A fake merged engine serving `ref` under the names `hybrid adapter merge` prints."""
    first, alias = served_names(ref, digest_of(registry, ref))
    engine = FakeEngine(base=first)
    engine.aliases = [alias]
    return engine


def gateway(registry, lora: FakeEngine, merged: FakeEngine, serves: str = "voice@v1"):
    replicas = [Replica(EngineClient("http://lora", transport=SwitchableTransport(lora)))]
    fast = Replica(
        EngineClient("http://merged", transport=SwitchableTransport(merged)),
        serves=serves,
        digest=digest_of(registry, serves),
        healthy=False,
    )
    manager = AdapterManager(registry, EngineSet(replicas, [fast]), "base")
    return TestClient(create_app(GatewayState.build(GatewayConfig(), manager)))


def served_via(client: TestClient, engine_name: str) -> str:
    rows = client.get("/admin/adapters").json()["adapters"]
    return next(row for row in rows if row["id"] == engine_name)["served_via"]


def test_the_current_version_goes_to_its_merged_engine_by_name_pinned_and_streamed(registry):
    lora, merged = FakeEngine(), merged_engine_for(registry, "voice@v1")
    with gateway(registry, lora, merged) as client:
        answer = chat(client, "voice").json()
        assert answer["model"] == "voice@v1"
        assert answer["choices"][0]["message"]["content"] == "voice@v1 says: hello there"
        assert chat(client, "voice@v1").status_code == 200
        chunks = sse_chunks(chat(client, "voice", stream=True))
        assert chunks[-1] == "[DONE]" and chunks[0]["model"] == "voice@v1"
        assert [r["model"] for r in merged.requests] == ["voice@v1"] * 3
        assert lora.requests == [] and lora.adapters == {}  # the LoRA was never loaded
        assert chat(client, "base").status_code == 200  # the base model stays on its engine
        assert [r["model"] for r in lora.requests] == ["base"]
        assert served_via(client, "voice@v1") == "merged"
        assert served_via(client, "voice@v2") == "lora"
        ready = client.get("/ready").json()
        assert ready["merged_engines"] == [
            {"url": "http://merged", "healthy": True, "serves": "voice@v1", "problem": None}
        ]


def test_a_promote_moves_the_adapter_and_pinned_requests_to_the_lora_path_and_back(registry):
    lora, merged = FakeEngine(), merged_engine_for(registry, "voice@v1")
    with gateway(registry, lora, merged) as client:
        assert chat(client, "voice").json()["model"] == "voice@v1"
        promoted = client.post("/admin/adapters/voice/promote", json={"version": "v2"})
        assert promoted.status_code == 200
        assert chat(client, "voice").json()["model"] == "voice@v2"
        assert chat(client, "voice@v1").json()["model"] == "voice@v1"  # pinned: LoRA now
        assert [r["model"] for r in lora.requests][-2:] == ["voice@v2", "voice@v1"]
        assert "voice@v1" in lora.adapters
        assert served_via(client, "voice@v1") == "lora"
        before = len(merged.requests)
        client.post("/admin/adapters/voice/promote", json={"version": "v1"})  # roll back
        assert chat(client, "voice").json()["model"] == "voice@v1"
        assert len(merged.requests) == before + 1
        assert served_via(client, "voice@v1") == "merged"


def test_a_merged_engine_that_stops_answering_is_routed_around_and_used_again(registry):
    lora, merged = FakeEngine(), merged_engine_for(registry, "voice@v1")
    with gateway(registry, lora, merged) as client:
        assert chat(client, "voice").status_code == 200 and len(merged.requests) == 1
        merged.down = True
        answer = chat(client, "voice")  # refused there: retried on the LoRA path, not failed
        assert answer.status_code == 200 and answer.json()["model"] == "voice@v1"
        assert [r["model"] for r in lora.requests] == ["voice@v1"]
        assert served_via(client, "voice@v1") == "lora"
        assert chat(client, "voice").status_code == 200 and len(lora.requests) == 2
        problem = client.get("/ready").json()["merged_engines"][0]["problem"]
        assert problem.startswith("engine at http://merged did not answer GET /v1/models")
        merged.down = False
        client.get("/ready")  # a health check (as the gateway's watcher runs them)
        assert chat(client, "voice").status_code == 200 and len(merged.requests) == 2


def test_an_engine_merged_from_other_weights_is_never_used(registry):
    lora, merged = FakeEngine(), merged_engine_for(registry, "voice@v1")
    merged.aliases = [digest_name("voice@v1", "0" * 64)]
    with gateway(registry, lora, merged) as client:
        assert chat(client, "voice").status_code == 200
        assert merged.requests == [] and [r["model"] for r in lora.requests] == ["voice@v1"]
        state = client.get("/ready").json()["merged_engines"][0]
        assert state["healthy"] is False
        expected = digest_name("voice@v1", digest_of(registry, "voice@v1"))
        assert state["problem"] == (
            "merged engine http://merged was merged from other weights than the registered "
            f"'voice@v1' (it serves 'voice@v1+sha256:{'0' * 16}', the registry's files give "
            f"'{expected}'); merge the registered version again: hybrid adapter merge voice@v1 "
            "--out DIR"
        )


def test_merged_problem_names_the_served_names_to_start_with():
    def cards(*ids: str) -> list[ModelCard]:
        return [ModelCard(i) for i in ids] + [ModelCard("x@v9", parent=ids[0] if ids else "b")]

    digest = "ab" * 32
    good = served_names("voice@v1", digest)
    assert good == ["voice@v1", "voice@v1+sha256:abababababababab"]
    assert merged_problem(cards(*good), "voice@v1", digest, "http://m") is None
    start = "start it with --served-model-name voice@v1 voice@v1+sha256:abababababababab"
    assert merged_problem(cards("base"), "voice@v1", digest, "http://m") == (
        f"merged engine http://m serves base as its base model, not 'voice@v1' (its first "
        f"served name); {start}"
    )
    # answers carry the first served name: the digest name first would rename them
    assert "not 'voice@v1' (its first" in merged_problem(
        cards(*reversed(good)), "voice@v1", digest, "http://m"
    )
    assert merged_problem(cards("voice@v1"), "voice@v1", digest, "http://m") == (
        f"merged engine http://m does not say which weights it was merged from; {start} "
        "(as `hybrid adapter merge` printed)"
    )
    # a LoRA named like the version on an ordinary engine is not a merged engine
    lora = [ModelCard("base"), ModelCard("voice@v1", parent="base")]
    assert "serves base as its base model" in merged_problem(lora, "voice@v1", digest, "u")


def test_choose_merged_takes_the_first_healthy_engine_of_that_version():
    states = [
        ReplicaState("a", False, frozenset({"v@1"})),
        ReplicaState("b", True, frozenset({"v@2"})),
        ReplicaState("c", True, frozenset({"v@1"})),
    ]
    assert choose_merged(states, "v@1") == 2
    assert choose_merged(states, "v@3") is None
    assert choose_merged([], "v@1") is None


def test_the_digest_follows_config_and_weights_not_the_manifest(registry, adapter_dirs, tmp_path):
    from finetune.scaling import scale_adapter

    stored = registry.resolve("voice@v1").adapter.path
    assert adapter_digest(stored) == adapter_digest(adapter_dirs["a"])  # the registered copy
    assert adapter_digest(adapter_dirs["a"]) != adapter_digest(adapter_dirs["b"])
    scaled = scale_adapter(adapter_dirs["a"], tmp_path / "half", 0.5)  # same weights file
    assert adapter_digest(scaled) != adapter_digest(adapter_dirs["a"])


def test_runtime_start_refuses_an_unregistered_version_and_other_weights(registry, tiny_llama_dir):
    from serving.engine import MergedEngineConfig, RemoteEngineConfig
    from serving.errors import ServingError
    from serving.runtime import ServingRuntime
    from tests.helpers.gateway import ServerThread

    lora, merged = FakeEngine(base="tiny-llama"), merged_engine_for(registry, "voice@v2")

    def runtime(version: str, lora_url: str, merged_url: str) -> ServingRuntime:
        return ServingRuntime(
            registry_root=registry.root,
            remote=RemoteEngineConfig(urls=(lora_url,)),
            base_model=tiny_llama_dir,
            merged=[MergedEngineConfig(adapter="voice", version=version, url=merged_url)],
        )

    with ServerThread(lora.app) as lora_server, ServerThread(merged.app) as merged_server:
        with pytest.raises(ServingError) as info:
            runtime("v7", lora_server.url, merged_server.url).start()
        assert str(info.value) == (
            f"merged_engines: {merged_server.url} is configured for voice@v7, which is not "
            "registered (adapter 'voice' has no version 'v7' (versions: v1, v2)); register and "
            "merge that version, or fix `version`"
        )
        with pytest.raises(ServingError, match="serves voice@v2, voice@v2\\+sha256:"):
            runtime("v1", lora_server.url, merged_server.url).start()  # v2's merge, not v1's
        fine = runtime("v2", lora_server.url, merged_server.url)
        fine.start()
        assert fine.gateway_state().manager.engines.merged[0].serves == "voice@v2"
    with ServerThread(lora.app) as lora_server:
        down = runtime("v2", lora_server.url, "http://127.0.0.1:9")  # not up yet: LoRA path
        down.start()
        assert down.gateway_state().manager.engines.merged[0].healthy is False


def test_the_config_refuses_bad_merged_engines_in_one_line(tmp_path):
    from hybrid.config import load_config
    from hybrid.errors import ConfigError

    config = tmp_path / "hybrid.yaml"
    config.write_text(
        "merged_engines:\n"
        "  - {adapter: voice@v1, version: v1, url: http://m:8001}\n"
        "  - {adapter: voice, version: v1, url: 'http://m:8001/v1'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config)
    message = str(info.value)
    assert "'voice@v1' holds '@'; write the name and the version apart" in message
    assert "'http://m:8001/v1' ends in /v1; give the server root (http://m:8001)" in message
    config.write_text(
        "merged_engines:\n"
        "  - {adapter: voice, version: v1, url: 'http://m:8001/'}\n"
        "  - {adapter: other, version: v2, url: http://m:8001}\n"
    )
    with pytest.raises(ConfigError, match="merged_engines lists http://m:8001 more than once"):
        load_config(config)
    config.write_text("merged_engines:\n  - {adapter: voice, version: v1, url: http://m:8001/}\n")
    (merged,) = load_config(config).merged_engines
    assert (merged.url, merged.engine_name) == ("http://m:8001", "voice@v1")


def test_merge_of_a_registered_version_records_it_and_prints_the_served_names(
    registry, tiny_llama_dir, tmp_path, capsys
):
    from hybrid.cli import main

    config = tmp_path / "hybrid.yaml"
    config.write_text(  # remote engines: no default engine to prepare for the offline registry
        f"adapters: {{registry: {registry.root}}}\nbase_model: {tiny_llama_dir}\n"
        "remote_engines: {urls: ['http://127.0.0.1:9']}\n"
    )
    out = tmp_path / "merged"
    args = ["--config", str(config), "adapter", "merge", "voice@v1", "--out", str(out)]
    assert main([*args, "--dtype", "float32"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    digest = digest_of(registry, "voice@v1")
    assert lines[0] == f"merged model written to {out}"
    assert f"--served-model-name voice@v1 voice@v1+sha256:{digest[:16]} " in lines[1]
    assert "merged_engines: [{adapter: voice, version: v1, url: http://HOST:8001}]" in lines[1]
    record = json.loads((out / "hybrid_merged.json").read_text())["adapter"]
    assert record == {"registered_as": "voice@v1", "sha256": digest}
    assert main(["--config", str(config), "adapter", "merge", "voice@v9", "--out", "x"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == "error: adapter 'voice' has no version 'v9' (versions: v1, v2)"


def test_no_merged_engine_keeps_every_request_on_the_lora_path(registry):
    lora = FakeEngine()
    client = EngineClient("http://lora", transport=httpx.ASGITransport(lora.app))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), "base")
    with TestClient(create_app(GatewayState.build(GatewayConfig(), manager))) as http:
        body = {"model": "voice", "messages": MESSAGES}
        assert http.post("/v1/chat/completions", json=body).json()["model"] == "voice@v1"
        assert "merged_engines" not in http.get("/ready").json()
        row = http.get("/admin/adapters").json()["adapters"][0]
        assert (row["served_via"], row["merged_engines"]) == ("lora", [])
