"""Tool calling on the default engine, as a user gets it: `hybrid serve` with no engine section
starts SmolLM2-135M-Instruct (ChatML template, so the supervisor picks vLLM's `hermes` parser),
and the official openai client calls a tool, sends its result back and gets an answer, on the
base model and on a plain adapter, streamed and not. Before, any request with `tools` got 400.
Costs a SmolLM2 vLLM start (~80 s)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from finetune.base_models import prepare_default_model
from tests.helpers.adapters import random_lora
from tests.helpers.gateway import free_port, start_serve, wait_ready

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris right now?"}]


@pytest.fixture(scope="module")
def default_serve(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools-smollm2")
    port = free_port()
    (root / "hybrid.yaml").write_text(yaml.safe_dump({"gateway": {"port": port}}))
    log = root / "serve.log"
    proc = start_serve(Path("hybrid.yaml"), log, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log, 600)
        voice = random_lora(prepare_default_model(), root / "voice", rank=8, seed=3)
        # registering load-tests the version on the engine: its first LoRA request on SmolLM2
        # can take longer than httpx's default 5 s on the busy 2-core box
        added = httpx.post(
            url + "/admin/adapters", json={"path": str(voice), "name": "voice"}, timeout=300
        )
        assert added.status_code == 201, added.text
        # A 503 with Retry-After is the gateway's answer while it routes around an engine it
        # saw fail (seen once in a full-suite run on the busy 2-core box): the SDK's own retry.
        yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=2, timeout=300)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()


@pytest.mark.parametrize("model", ["SmolLM2-135M-Instruct", "voice"])
def test_tool_call_round_trip_on_the_default_engine(default_serve, model):
    api = default_serve
    forced = api.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=150,
        temperature=0,
    )
    (call,) = forced.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    # vLLM hands the constrained output over as the arguments; SmolLM2-135M wrote a JSON
    # string there (measured), not the object the schema asks for: parseable, not guaranteed
    # to be an object, so only JSON is asserted
    json.loads(call.function.arguments)
    follow_up = [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21, "sky": "sunny"}'},
    ]
    answer = api.chat.completions.create(
        model=model, messages=follow_up, tools=[WEATHER_TOOL], max_tokens=40, temperature=0
    )
    choice = answer.choices[0]
    assert choice.message.content or choice.message.tool_calls, choice
    required = api.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=150,
        temperature=0,
    )
    assert [c.function.name for c in required.choices[0].message.tool_calls] == ["get_weather"]
    stream = api.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=150,
        temperature=0,
        stream=True,
    )
    names = [
        call.function.name
        for chunk in stream
        for choice in chunk.choices
        for call in choice.delta.tool_calls or []
        if call.function and call.function.name
    ]
    assert names == ["get_weather"]
