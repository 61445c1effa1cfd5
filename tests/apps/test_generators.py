"""OpenAIGenerator: an app's text from any OpenAI-compatible server, through the official
`openai` client (fast tier, over the fake engine on a real loopback server)."""

from __future__ import annotations

import pytest

from hybrid.apps.generators import OpenAIGenerator
from hybrid.errors import HybridError
from tests.helpers.gateway import ServerThread
from tests.serving.fake_engine import FakeEngine


def test_openai_generator_sends_key_model_and_sampling_and_keeps_the_usage():
    engine = FakeEngine()
    engine.adapters["voice"] = "/adapters/voice"
    engine.reply = "Descale every 3 months."
    keys: list[str | None] = []

    @engine.app.middleware("http")
    async def record_key(request, call_next):
        keys.append(request.headers.get("authorization"))
        return await call_next(request)

    messages = [{"role": "user", "content": "How often should I descale?"}]
    with ServerThread(engine.app) as server:
        generator = OpenAIGenerator(server.url, "voice", api_key="k-engine")
        text = generator.generate(messages, {"max_tokens": 30, "temperature": 0, "top_k": 5})
        with pytest.raises(HybridError) as error:
            OpenAIGenerator(server.url + "/v1", "ghost").generate(messages, {})
    assert text == "Descale every 3 months."
    assert generator.last_usage == {"prompt_tokens": 5, "completion_tokens": 4}
    sent = engine.requests[0]
    assert (sent["model"], sent["messages"]) == ("voice", messages)
    assert (sent["max_tokens"], sent["temperature"], sent["top_k"]) == (30, 0, 5)
    assert keys[-2:] == ["Bearer k-engine", "Bearer none"]
    assert str(error.value).startswith("engine model 'ghost': NotFoundError: ")
    assert "The model `ghost` does not exist." in str(error.value)
