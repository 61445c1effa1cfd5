"""The schema fuzz of test_gateway_fuzz.py against the real vLLM server over real HTTP, on the
two routes that reach it (chat and completions): whatever the fuzzer sends, vLLM's refusals
must come back as OpenAI 4xx errors, never as a 5xx. Generation is kept short (8 tokens) except
where a case asks for more than any context holds, which vLLM must refuse."""

from __future__ import annotations

import time

import pytest
import schemathesis
from schemathesis import GenerationMode

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineSet
from serving.gateway import GatewayConfig, GatewayState, create_app
from tests.helpers.adapters import random_lora
from tests.helpers.fuzz import Fuzzer
from tests.helpers.gateway import ServerThread
from tests.helpers.reliability import record

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("clean_vllm_engine")]

OPERATIONS = ("/v1/chat/completions", "/v1/completions")


@pytest.fixture(scope="module")
def gateway(vllm_engine, tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-vllm")
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), max_rank=8)
    registry.register(random_lora(tiny_llama_dir, root / "voice", rank=8, seed=21), "voice")
    manager = AdapterManager(
        registry, EngineSet.build(supervised=vllm_engine), vllm_engine.config.base_model_name
    )
    with ServerThread(create_app(GatewayState.build(GatewayConfig(), manager))) as server:
        yield server


@pytest.mark.reliability
def test_schema_fuzz_against_vllm_finds_no_server_error(gateway, vllm_engine):
    started = time.perf_counter()
    base = vllm_engine.config.base_model_name
    fuzzer = Fuzzer(
        ("voice", base, "voice@v1", "nope"),
        ({},),
        max_examples={GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25},
        raw_examples=10,
        max_tokens=8,
        timeout_s=120,
    )
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
    for path in OPERATIONS:
        fuzzer.operation(schema[path]["POST"])
    took = time.perf_counter() - started
    print(f"\n{fuzzer.cases} cases in {took:.1f} s: {dict(sorted(fuzzer.statuses.items()))}")
    for (status, message), n in fuzzer.errors.most_common(15):
        print(f"{n:5} x {status} {message}")
    assert 200 in fuzzer.statuses and 400 in fuzzer.statuses
    record(
        "Bad input",
        "Schema fuzz against real vLLM",
        operations=len(OPERATIONS),
        **fuzzer.figures(),
        took_s=round(took, 1),
    )
