"""Cross-site requests and DNS rebinding, in seconds (the same in Chromium: tests/browser/
test_cross_site.py): a gateway without keys answers only its own Host and pages; bodies not
declared JSON are refused on every JSON route, keys or not; admin routes answer no other page."""

from __future__ import annotations

import openai
import pytest

from serving.gateway import ApiKey, AuthConfig, GatewayConfig, hash_key
from tests.helpers.reliability import record
from tests.serving.test_gateway import MESSAGES, make_client
from tests.serving.test_gateway import registry as registry

CHAT = {"model": "voice", "messages": MESSAGES}
ADMIN_KEY = "k-admin"
KEYED = GatewayConfig(auth=AuthConfig(admin_keys=(ApiKey(name="ops", sha256=hash_key(ADMIN_KEY)),)))
JSON_ROUTES = ["/v1/chat/completions", "/v1/completions", "/admin/adapters"]
SAFELISTED = [  # what a page may send cross-site without a preflight
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
]


def test_a_foreign_host_is_refused_without_keys(registry):
    with make_client(registry) as client:
        client.base_url = "http://127.0.0.1:8080"  # TestClient's server address is that too
        for host in ("127.0.0.1:8080", "localhost:8080", "LOCALHOST.:8080", "[::1]:8080"):
            assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host
        refused = {}
        for host in ("rebind.example:8080", "localhost:9000", "127.0.0.1", "", "a@b:8080"):
            response = client.get("/v1/models", headers={"Host": host})
            refused[host] = response.status_code
            error = response.json()["error"]
            assert (
                error["code"] == "host_not_allowed" and "gateway.allowed_hosts" in error["message"]
            )
        assert set(refused.values()) == {403}, refused
        post = client.post("/v1/chat/completions", json=CHAT, headers={"Host": "rebind.example"})
        assert post.status_code == 403


def test_allowed_hosts_and_keys_open_other_names(registry):
    config = GatewayConfig(allowed_hosts=("localhost:9000", "gpu-box.internal"))
    with make_client(registry, config=config) as client:
        client.base_url = "http://127.0.0.1:8080"
        for host in ("localhost:9000", "gpu-box.internal:1234", "GPU-box.internal"):
            assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host
        assert client.get("/v1/models", headers={"Host": "localhost:9001"}).status_code == 403
    with make_client(registry, config=KEYED) as client:  # keys protect a keyed gateway
        admin = {"Authorization": f"Bearer {ADMIN_KEY}", "Host": "gateway.example.com"}
        assert client.get("/v1/models", headers=admin).status_code == 200
    with pytest.raises(ValueError, match="not host names"):
        GatewayConfig(allowed_hosts=("http://x/",))
    with pytest.raises(ValueError, match="'\\*' is not allowed"):
        GatewayConfig(allowed_origins=("*",))


def test_pages_of_other_sites_are_refused_without_keys(registry):
    config = GatewayConfig(allowed_origins=("https://intranet.example",))
    with make_client(registry, config=config) as client:
        own = {"Origin": "http://testserver"}  # the playground's own page
        assert client.post("/v1/chat/completions", json=CHAT, headers=own).status_code == 200
        assert client.post("/admin/adapters/voice/load", headers=own).status_code == 200
        for origin in ("http://localhost:3000", "https://intranet.example"):
            served = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": origin})
            assert served.status_code == 200, origin
            assert served.headers["access-control-allow-origin"] == origin  # the widget's CORS
        for origin in ("https://evil.example", "null", "http://testserver:81", "garbage"):
            response = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": origin})
            assert response.status_code == 403, origin
            error = response.json()["error"]
            assert error["code"] == "cross_site_request" and origin in error["message"]
        preflight = client.options(
            "/v1/chat/completions",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert (
            preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
        )


def test_admin_routes_answer_no_other_page_even_with_keys(registry):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with make_client(registry, config=KEYED) as client:
        for origin in ("http://localhost:3000", "https://shop.example"):
            page = {**admin, "Origin": origin}
            for method, path in (
                ("GET", "/admin/adapters"),
                ("POST", "/admin/adapters/voice/load"),
                ("GET", "/metrics"),
            ):
                response = client.request(method, path, headers=page)
                assert response.status_code == 403, (origin, path)
                assert (
                    "answer no web page but the gateway's own"
                    in response.json()["error"]["message"]
                )
        own = {**admin, "Origin": "http://testserver"}
        assert client.get("/admin/adapters", headers=own).status_code == 200
        assert client.get("/admin/adapters", headers=admin).status_code == 200


@pytest.mark.reliability
def test_bodies_not_declared_json_are_refused_on_every_json_route(registry):
    refused = 0
    with make_client(registry) as client:
        for route in JSON_ROUTES:
            for content_type in [*SAFELISTED, "image/png"]:
                response = client.post(
                    route,
                    content=b'{"model": "voice", "prompt": "hi"}',
                    headers={"Content-Type": content_type},
                )
                assert response.status_code == 415, (route, content_type, response.text)
                error = response.json()["error"]
                assert error["code"] == "unsupported_media_type", error
                assert "Content-Type: application/json" in error["message"], error
                refused += 1
        # an empty cross-site form would otherwise still unload an adapter
        empty = client.post("/admin/adapters/voice/unload", headers={"Content-Type": "text/plain"})
        assert empty.status_code == 415
        # what real clients send is served
        for headers in (
            {"Content-Type": "application/json; charset=utf-8"},
            {"Content-Type": "application/vnd.api+json"},
            {},
        ):
            ok = client.post(
                "/v1/chat/completions",
                content=b'{"model": "voice", "messages": [{"role": "user", "content": "hi"}]}',
                headers=headers,
            )
            assert ok.status_code == 200, (headers, ok.text)
        assert client.post("/admin/adapters/voice/load").status_code == 200  # curl -X POST
        sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=client)
        assert sdk.chat.completions.create(model="voice", messages=MESSAGES).choices
    record(
        "Bad input",
        "Cross-site requests: bodies a page may send without preflight (text/plain, form, "
        "multipart) and other non-JSON types, on every JSON route",
        sent=refused,
        refused_415=refused,
    )
