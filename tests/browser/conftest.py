"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser download)
against the real gateway: uvicorn on a loopback port, two apps over a real knowledge base
(MiniLM, embedded Chroma) and an adapter with two versions, over the in-process fake engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.apps.app import open_pipeline
from hybrid.apps.composer import AppComposer
from hybrid.apps.spec import AppSpec
from hybrid.config import HybridConfig
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import (
    ApiKey,
    AuthConfig,
    GatewayConfig,
    GatewayMetrics,
    GatewayState,
    create_app,
    hash_key,
)
from tests.helpers.adapters import random_lora
from tests.helpers.documents import write_brewbird_docs
from tests.helpers.gateway import ServerThread
from tests.serving.fake_engine import FakeEngine

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ENGINE_DELAY_S = 0.4
"""The fake engine's time to answer: slow enough that the page shows the text growing."""
ADMIN_KEY = "hy-admin-test"
SITE_KEY = "hy-site-test"
"""Scoped to the `brewbird` app: what a site pastes into the widget's tag."""

APPS = [
    {
        "name": "brewbird",
        "adapter": "voice",
        "persona": "You are Pip, BrewBird's assistant.",
        "branding": {"title": "Pip from BrewBird", "color": "#e4572e", "greeting": "Hi, I'm Pip!"},
    },
    {
        "name": "brewbird-basic",
        "persona": "You answer BrewBird questions.",
        "branding": {"title": "BrewBird Basic", "color": "#1d6f64"},
    },
]


@pytest.fixture(scope="package")
def gateway(tiny_llama_dir, tmp_path_factory):
    """(url, fake engine) of a keyed gateway; tests set `engine.reply` for what they need."""
    root = tmp_path_factory.mktemp("browser")
    docs = write_brewbird_docs(root / "docs", "refunds.md", "warranty.md", "descaling.md")
    catalog = KnowledgeBaseCatalog(HybridConfig(store=EmbeddedStoreConfig(path=root / "db")).store)
    catalog.create("brewbird-kb").ingest([docs])
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), 16)
    registry.register(random_lora(tiny_llama_dir, root / "v1", seed=1), "voice", "v1")
    registry.register(
        random_lora(tiny_llama_dir, root / "v2", seed=2), "voice", "v2", promote=False
    )
    engine = FakeEngine(delay_s=ENGINE_DELAY_S)
    engine_server = ServerThread(engine.app).start()  # over HTTP: ASGITransport would buffer
    manager = AdapterManager(
        registry, EngineSet([Replica(EngineClient(engine_server.url))]), "base"
    )
    metrics = GatewayMetrics()
    specs = [AppSpec.model_validate({"knowledge_base": "brewbird-kb", **a}) for a in APPS]
    composer = AppComposer([open_pipeline(s, catalog) for s in specs], "base", metrics.registry)
    auth = AuthConfig(
        api_keys=(ApiKey(name="site", sha256=hash_key(SITE_KEY), models=("brewbird",)),),
        admin_keys=(ApiKey(name="ops", sha256=hash_key(ADMIN_KEY)),),
    )
    state = GatewayState.build(
        GatewayConfig(auth=auth), manager, composers=[composer], metrics=metrics
    )
    try:
        with ServerThread(create_app(state)) as server:
            yield server.url, engine
    finally:
        engine_server.stop()


@pytest.fixture(scope="package")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (`make test` does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install -e '.[dev]' (`make test` does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, gateway):
    """A fresh page; `page.console` holds its console messages as (type, text). An uncaught
    script error fails the test."""
    # The widget test's site is public (https://shop.example) and the gateway on loopback: Chrome
    # lets such a page reach it only with the visitor's Local Network Access permission.
    context = browser.new_context(
        viewport={"width": 1280, "height": 860}, permissions=["local-network-access"]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.console = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: page.console.append((message.type, message.text)))
    yield page
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
