"""The playground page, the widget script and the widget's CORS policy, without a browser (the
browser drives them in tests/browser/)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import ApiKey, AuthConfig, GatewayConfig, GatewayState, create_app, hash_key
from serving.gateway.cors import origin_allowed
from tests.serving.fake_engine import FakeEngine

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "serving" / "gateway" / "static"
CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def registry(tiny_llama_dir, tmp_path_factory):
    return AdapterRegistry(tmp_path_factory.mktemp("registry"), describe_base(tiny_llama_dir), 16)


def client(registry, auth: AuthConfig | None = None) -> TestClient:
    engine = FakeEngine()
    transport = httpx.ASGITransport(engine.app)
    manager = AdapterManager(
        registry, EngineSet([Replica(EngineClient("http://fake", transport=transport))]), "base"
    )
    config = GatewayConfig(auth=auth or AuthConfig())
    return TestClient(create_app(GatewayState.build(config, manager)))


@pytest.fixture(scope="module")
def open_gateway(registry):
    with client(registry) as http:
        yield http


@pytest.fixture(scope="module")
def keyed_gateway(registry):
    auth = AuthConfig(
        api_keys=(ApiKey(name="site", sha256=hash_key("site-key"), models=("base",)),),
        admin_keys=(ApiKey(name="ops", sha256=hash_key("admin-key")),),
    )
    with client(registry, auth) as http:
        yield http


def test_playground_page_links_only_assets_it_serves(open_gateway):
    page = open_gateway.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<label for="message">Message</label>' in page.text
    linked = re.findall(r'(?:src|href)="(/playground/[^"]+)"', page.text)
    assert len(linked) == 4
    for path in linked:
        asset = open_gateway.get(path)
        kind = "text/javascript" if path.endswith(".js") else "text/css"
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind), path
    again = open_gateway.get("/playground", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304


def test_the_key_field_says_whether_this_gateway_needs_a_key(open_gateway, keyed_gateway):
    """It said "not needed on loopback" on a loopback gateway with keys."""
    hint = re.compile(r'id="api-key"[^>]*placeholder="([^"]*)"')
    assert (
        hint.search(open_gateway.get("/playground").text)[1]
        == "not needed: this gateway has no keys"
    )
    keyed = keyed_gateway.get("/playground").text
    assert hint.search(keyed)[1] == "required: this gateway has API keys"
    assert "{{" not in keyed


@pytest.mark.parametrize("path", ["/playground/widget.css", "/playground/..%2Fapp.py"])
def test_unknown_playground_file_is_an_openai_404(open_gateway, path):
    answer = open_gateway.get(path)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_widget_script_is_one_self_contained_function(keyed_gateway):
    script = keyed_gateway.get("/widget.js")  # no key: a <script> tag sends none
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    body = script.text
    assert body.index("(() => {") < body.index("const WIDGET_CSS") < body.index("HybridChat")
    assert body.rstrip().endswith("})();")
    assert ".hy-bubble" in body and ".hy-source" in body  # widget and shared CSS inlined


@pytest.mark.parametrize(
    ("origin", "any_origin", "allowed"),
    [
        ("http://localhost:5173", False, True),
        ("http://127.0.0.1:8000", False, True),
        ("http://[::1]:3000", False, True),
        ("https://shop.example", False, False),
        ("http://localhost.shop.example", False, False),
        ("https://shop.example", True, True),
        ("null", True, False),
    ],
)
def test_origin_policy(origin, any_origin, allowed):
    assert origin_allowed(origin, any_origin) is allowed


def preflight(http: TestClient, path: str, origin: str, method: str = "POST") -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return http.options(path, headers=headers)


def test_open_gateway_allows_loopback_pages_only(open_gateway):
    ok = preflight(open_gateway, "/v1/chat/completions", "http://localhost:5173")
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "Authorization" in ok.headers["access-control-allow-headers"]
    listing = open_gateway.get("/v1/models", headers={"Origin": "http://localhost:5173"})
    assert listing.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "Origin" in listing.headers["vary"]
    refused = preflight(open_gateway, "/v1/chat/completions", "https://shop.example")
    assert "access-control-allow-origin" not in refused.headers
    foreign = open_gateway.get("/v1/models", headers={"Origin": "https://shop.example"})
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    assert foreign.json()["error"]["code"] == "cross_site_request"  # sites.SiteGuard


def test_keyed_gateway_allows_any_site_on_the_widget_routes_only(keyed_gateway):
    site = {"Origin": "https://shop.example"}
    assert preflight(keyed_gateway, "/v1/chat/completions", site["Origin"]).status_code == 204
    assert preflight(keyed_gateway, "/v1/models/base", site["Origin"], "GET").status_code == 204
    chat = keyed_gateway.post(
        "/v1/chat/completions", json=CHAT, headers={**site, "Authorization": "Bearer site-key"}
    )
    assert chat.status_code == 200
    assert chat.headers["access-control-allow-origin"] == "https://shop.example"
    denied = keyed_gateway.post("/v1/chat/completions", json=CHAT, headers=site)
    assert denied.status_code == 401  # the widget can read why
    assert denied.headers["access-control-allow-origin"] == "https://shop.example"
    admin = {**site, "Authorization": "Bearer admin-key"}
    for method, path in [("get", "/admin/adapters"), ("get", "/metrics")]:
        answer = keyed_gateway.request(method, path, headers=admin)
        assert answer.status_code == 403 and "access-control-allow-origin" not in answer.headers
        assert answer.json()["error"]["code"] == "cross_site_request"  # sites.SiteGuard
    for path in ["/v1/completions", "/admin/adapters"]:
        assert (
            "access-control-allow-origin"
            not in preflight(keyed_gateway, path, site["Origin"]).headers
        )


def test_requests_without_origin_get_no_cors_headers(keyed_gateway):
    chat = keyed_gateway.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer site-key"}
    )
    assert chat.status_code == 200
    assert not [h for h in chat.headers if h.startswith("access-control-")]


def test_private_network_preflight_is_answered_for_allowed_origins(keyed_gateway):
    headers = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Private-Network": "true",
    }
    answer = keyed_gateway.options("/v1/chat/completions", headers=headers)
    assert answer.headers["access-control-allow-private-network"] == "true"


def test_every_static_file_is_package_data():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["serving.gateway"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert len(files) >= 7
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not missing, f"add them to [tool.setuptools.package-data] in pyproject.toml: {missing}"
