"""Cross-site requests against a gateway without keys, in headless Chromium: a page of another
site tries `fetch()` with text/plain bodies and a text/plain form post to the admin API, and a
rebound DNS name (attacker.example -> 127.0.0.1) opens the gateway's pages; every one arrives
and is refused, nothing reaches the engine or the registry, and the playground still works on
loopback. (The same rules in seconds: tests/serving/test_sites.py.)"""

from __future__ import annotations

import pytest

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import GatewayConfig, GatewayState, create_app
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.adapters import random_lora
from tests.helpers.gateway import ServerThread
from tests.helpers.reliability import record
from tests.serving.fake_engine import FakeEngine

pytestmark = pytest.mark.browser

EVIL = "https://evil.example/"
REBOUND = "rebind.example"
"""Chromium resolves it to 127.0.0.1, as a DNS rebinding attacker's name would."""
ATTACK_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Win a prize</title></head>
<body><h1>Congratulations!</h1>
<form id="admin" method="post" enctype="text/plain" action="{gateway}/admin/adapters">
  <input type="hidden" name='{{"path": "/tmp/evil", "name": "evil", "pad": "' value='"}}'>
</form>
<script>
window.attempts = (async () => {{
  const chat = JSON.stringify({{model: "voice", messages: [{{role: "user", content: "hi"}}]}});
  const results = [];
  for (const [path, body] of [["/v1/chat/completions", chat],
                              ["/admin/adapters/voice/unload", "{{}}"]]) {{
    try {{
      const answer = await fetch("{gateway}" + path, {{method: "POST", mode: "no-cors", body}});
      results.push(answer.type);  // "opaque": the page cannot read it, but it was sent
    }} catch (error) {{ results.push("error: " + error); }}
  }}
  try {{  // JSON needs a preflight, which the gateway refuses
    await fetch("{gateway}/v1/chat/completions",
                {{method: "POST", body: chat, headers: {{"Content-Type": "application/json"}}}});
    results.push("read");
  }} catch (error) {{ results.push("blocked"); }}
  return results;
}})();
</script></body></html>"""


class Recorder:
    """ASGI wrapper keeping (method, path, status, Host, Origin) of every request."""

    def __init__(self, app):
        self.app = app
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        entry = {
            "method": scope["method"],
            "path": scope["path"],
            "host": headers.get("host"),
            "origin": headers.get("origin"),
        }
        self.seen.append(entry)

        async def keep_status(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, keep_status)


@pytest.fixture(scope="module")
def open_gateway(tiny_llama_dir, tmp_path_factory):
    """(url, recorder, engine, registry) of a gateway without keys on a loopback port."""
    root = tmp_path_factory.mktemp("cross-site")
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), 16)
    registry.register(random_lora(tiny_llama_dir, root / "v1", seed=1), "voice", "v1")
    engine = FakeEngine()
    engine_server = ServerThread(engine.app).start()
    manager = AdapterManager(
        registry, EngineSet([Replica(EngineClient(engine_server.url))]), "base"
    )
    recorder = Recorder(create_app(GatewayState.build(GatewayConfig(), manager)))
    try:
        with ServerThread(recorder) as server:
            yield server.url, recorder, engine, registry
    finally:
        engine_server.stop()


@pytest.fixture(scope="module")
def rebinding_browser():
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def tab(rebinding_browser):
    # The worst case: the visitor granted Local Network Access, so the requests do arrive.
    context = rebinding_browser.new_context(permissions=["local-network-access"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.mark.reliability
def test_another_site_cannot_drive_a_gateway_without_keys(tab, open_gateway):
    url, recorder, engine, registry = open_gateway
    recorder.seen.clear()
    asked = len(engine.requests)
    html = ATTACK_PAGE.format(gateway=url)
    tab.route(EVIL, lambda route: route.fulfill(body=html, content_type="text/html"))
    tab.goto(EVIL)
    results = tab.evaluate("window.attempts")
    assert results == ["opaque", "opaque", "blocked"], results
    with tab.expect_navigation():
        tab.evaluate("document.getElementById('admin').submit()")
    assert "cross_site_request" in tab.content()  # the form's answer, shown to nobody useful

    # Chromium sends the form's Origin as "null" (an https page posting to http); under
    # Playwright's interception the JSON fetch arrives without its preflight: refused alike.
    from_evil = recorder.seen
    arrived = sorted(r["path"] for r in from_evil)
    assert arrived == [
        "/admin/adapters",
        "/admin/adapters/voice/unload",
        "/v1/chat/completions",
        "/v1/chat/completions",
    ], from_evil
    assert {r["origin"] for r in from_evil} <= {EVIL.rstrip("/"), "null"}, from_evil
    assert {r["status"] for r in from_evil} == {403}, from_evil
    assert len(engine.requests) == asked, "a cross-site request reached the engine"
    assert [v.name for v in registry.list()] == ["voice"]
    record(
        "Tenants and keys",
        "Cross-site requests in Chromium: another site's fetch() with text/plain bodies "
        "(chat, adapter unload), a JSON fetch needing preflight and a text/plain form post "
        "to /admin/adapters, against a gateway without keys",
        attempts=len(from_evil),
        refused=sum(r["status"] == 403 for r in from_evil),
        reached_engine=len(engine.requests) - asked,
    )


@pytest.mark.reliability
def test_a_rebound_dns_name_gets_nothing(tab, open_gateway):
    url, recorder, _engine, _ = open_gateway
    recorder.seen.clear()
    port = url.rsplit(":", 1)[1]
    refused = 0
    for path in ("/playground", "/v1/models", "/admin/adapters", "/ready"):
        answer = tab.goto(f"http://{REBOUND}:{port}{path}")
        assert answer.status == 403, (path, answer.status)
        assert "host_not_allowed" in tab.content()
        refused += 1
    assert {r["host"] for r in recorder.seen} == {f"{REBOUND}:{port}"}
    record(
        "Tenants and keys",
        "DNS rebinding in Chromium: a rebound name (rebind.example -> 127.0.0.1) opens the "
        "playground, model list, admin list and /ready of a gateway without keys",
        pages=4,
        refused_403=refused,
        requests_that_reached_the_gateway=len(recorder.seen),  # the pages and their favicons
    )


def test_the_playground_still_works_on_loopback(tab, open_gateway):
    from playwright.sync_api import expect

    url, recorder, _engine, _ = open_gateway
    for origin in (url, url.replace("127.0.0.1", "localhost")):
        recorder.seen.clear()
        tab.goto(f"{origin}/playground?model=voice")
        key = tab.get_by_label("API key")
        expect(key).to_have_attribute("placeholder", "not needed: this gateway has no keys")
        expect(tab.get_by_label("Model", exact=True)).to_have_value("voice")
        box = tab.get_by_label("Message", exact=True)
        box.fill("hello from the playground")
        box.press("Enter")
        answer = tab.locator(".hy-assistant .hy-text").last
        expect(answer).to_have_text("voice@v1 says: hello from the playground")
        posts = [r for r in recorder.seen if r["method"] == "POST"]
        assert posts and {r["status"] for r in posts} == {200}, posts
        assert {r["origin"] for r in posts} == {origin}  # same-origin, so allowed
