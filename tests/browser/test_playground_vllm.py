"""The playground in headless Chromium against the gateway over the real vLLM server (tiny
model): two adapter versions side by side, each answer streamed from the engine and labelled
with the version that produced it."""

from __future__ import annotations

import pytest

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineSet
from serving.gateway import ApiKey, AuthConfig, GatewayConfig, GatewayState, create_app, hash_key
from tests.browser.conftest import ADMIN_KEY, screenshot
from tests.browser.test_playground import ask, open_playground
from tests.helpers.adapters import random_lora
from tests.helpers.gateway import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.vllm]


@pytest.fixture(scope="module")
def vllm_gateway(vllm_engine, tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-vllm")
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), 8)
    for version, seed in (("v1", 31), ("v2", 32)):
        lora = random_lora(tiny_llama_dir, root / version, seed=seed, alpha=128)
        registry.register(lora, "browser-voice", version, promote=version == "v1")
    manager = AdapterManager(
        registry, EngineSet.build(supervised=vllm_engine), vllm_engine.config.base_model_name
    )
    auth = AuthConfig(admin_keys=(ApiKey(name="ops", sha256=hash_key(ADMIN_KEY)),))
    state = GatewayState.build(GatewayConfig(auth=auth), manager)
    with ServerThread(create_app(state)) as server:
        yield server.url


def test_two_versions_side_by_side_from_the_real_engine(page, vllm_gateway):
    from playwright.sync_api import expect

    open_playground(page, vllm_gateway, "?model=browser-voice@v1&compare=browser-voice@v2")
    expect(page.get_by_label("Side by side")).to_be_checked()
    left, right = page.locator(".pane").nth(0), page.locator(".pane").nth(1)
    ask(page, "What is the capital of France?")
    expect(left.locator(".hy-served")).to_have_text("answered by browser-voice@v1", timeout=60_000)
    expect(right.locator(".hy-served")).to_have_text("answered by browser-voice@v2", timeout=60_000)
    assert left.locator(".hy-assistant .hy-text").last.text_content().strip()
    assert right.locator(".hy-assistant .hy-text").last.text_content().strip()
    screenshot(page, "playground-vllm-side-by-side")
