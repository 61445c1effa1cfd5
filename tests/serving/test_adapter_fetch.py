"""Adapters for replicas that cannot read the gateway's disk, in seconds: the gateway's admin
route that hands out a registered version's files (auth, errors in OpenAI's shape, checks), the
replica-side fetcher (serving/engine/vllm_plugins/hybrid_adapter_fetch.py) against that route
over real HTTP and against a lying server (sha256 and size refused, nothing kept), the vLLM
resolver glue, and the engine set asking a fetching replica by name. The whole path with a real
vLLM in its own mount namespace: test_adapter_fetch_vllm.py."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import httpx
import pytest

from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.engine.launch import GUARD_DIR
from serving.errors import AdapterLoadError
from serving.gateway import ApiKey, AuthConfig, GatewayConfig, GatewayState, create_app, hash_key
from tests.helpers.gateway import ServerThread
from tests.serving.fake_engine import FakeEngine

ADMIN = {"Authorization": "Bearer k-admin"}
KEYS = AuthConfig(
    api_keys=(ApiKey(name="acme", sha256=hash_key("k-acme")),),
    admin_keys=(ApiKey(name="ops", sha256=hash_key("k-admin")),),
)


@pytest.fixture
def registry(voice_registry):
    return voice_registry  # conftest: voice v1 (current) and v2


@pytest.fixture
def gateway(registry):
    """The real gateway app with keys on a loopback port (over the fake engine)."""
    engine = FakeEngine()
    client = EngineClient("http://fake-engine", transport=httpx.ASGITransport(engine.app))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), engine.base)
    with ServerThread(create_app(GatewayState.build(GatewayConfig(auth=KEYS), manager))) as server:
        yield server


@pytest.fixture
def fetch(monkeypatch):
    """The replica-side fetcher module, imported as vLLM's interpreter imports it."""
    monkeypatch.syspath_prepend(str(GUARD_DIR))
    import hybrid_adapter_fetch

    return hybrid_adapter_fetch


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_url(base: str, ref: str = "voice/versions/v1") -> str:
    return f"{base}/admin/adapters/{ref}/files"


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error["message"]


# ---- the gateway's route ----------------------------------------------------------------------


def test_files_route_lists_each_stored_file_with_its_sha256_and_serves_it(gateway, registry):
    manifest = httpx.get(files_url(gateway.url), headers=ADMIN).json()
    store = registry.resolve("voice@v1").adapter.path
    assert manifest["format"] == "hybrid-adapter-files/1"
    assert (manifest["id"], manifest["name"], manifest["version"]) == ("voice@v1", "voice", "v1")
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == {p.name for p in store.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "hybrid_adapter.json"} <= set(
        listed
    )
    for name, entry in listed.items():
        assert entry == {
            "name": name,
            "size": (store / name).stat().st_size,
            "sha256": sha(store / name),
        }
        got = httpx.get(f"{files_url(gateway.url)}/{name}", headers=ADMIN)
        assert got.status_code == 200 and got.content == (store / name).read_bytes()
        assert got.headers["content-type"] == "application/octet-stream"
    other = httpx.get(files_url(gateway.url, "voice/versions/v2"), headers=ADMIN).json()
    assert other["id"] == "voice@v2"  # a version that is not current is served too
    assert other["files"] != manifest["files"]


@pytest.mark.parametrize("suffix", ["", "/adapter_config.json"])
def test_files_route_needs_an_admin_key(gateway, suffix):
    url = files_url(gateway.url) + suffix
    assert_error(httpx.get(url), 401, "invalid_api_key", "missing API key")
    assert_error(
        httpx.get(url, headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key", "invalid"
    )
    assert_error(
        httpx.get(url, headers={"Authorization": "Bearer k-acme"}),
        403,
        "permission_denied",
        "key 'acme' may not use admin routes",
    )


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("nobody/versions/v1/files", ["unknown adapter 'nobody'", "registered: voice"]),
        ("voice/versions/v9/files", ["has no version 'v9'", "versions: v1, v2"]),
        ("voice/versions/v1@v2/files", ["no adapter version 'voice@v1@v2'"]),
        ("voice/versions/v1/files/model.bin", ["no file 'model.bin'", "adapter_config.json"]),
        ("voice/versions/v1/files/..", []),
        ("voice/versions/v1/files/%2e%2e%2findex.json", []),
    ],
)
def test_unknown_name_version_or_file_is_a_404_in_openai_shape(gateway, ref, words):
    response = httpx.get(f"{gateway.url}/admin/adapters/{ref}", headers=ADMIN)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    for word in words:
        assert word in error["message"]


def test_stored_files_that_fail_the_checks_are_not_handed_out(gateway, registry):
    """A stored version whose weights became NaN on disk after registration: the gateway would
    not load it itself, so it gives no replica its manifest either."""
    from safetensors.torch import load_file, save_file

    weights = registry.resolve("voice@v1").adapter.path / "adapter_model.safetensors"
    tensors = load_file(weights)
    first = next(iter(tensors))
    tensors[first][0, 0] = float("nan")
    save_file(tensors, weights)
    assert_error(
        httpx.get(files_url(gateway.url), headers=ADMIN),
        422,
        "adapter_rejected",
        "non-finite",
    )


# ---- the replica's fetcher against the route --------------------------------------------------


def settings_for(fetch, url: str, cache: Path, key: str | None = "k-admin"):
    return fetch.FetchSettings(gateway_url=url, api_key=key, cache_dir=cache, timeout_s=10)


def test_fetch_downloads_a_version_checks_it_and_then_uses_the_cache(
    gateway, registry, fetch, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    settings = settings_for(fetch, gateway.url, cache)
    folder = fetch.fetch_version(settings, "voice@v2")
    store = registry.resolve("voice@v2").adapter.path
    assert folder == cache / "voice" / "v2"
    assert {p.name: sha(p) for p in folder.iterdir()} == {p.name: sha(p) for p in store.iterdir()}
    assert [p.name for p in (cache / "voice").iterdir()] == ["v2"]  # no .partial left behind

    def no_download(*args):
        raise AssertionError("a cached version that matches must not be downloaded again")

    monkeypatch.setattr(fetch, "_download", no_download)
    assert fetch.fetch_version(settings, "voice@v2") == folder


def test_a_damaged_cached_copy_is_fetched_again(gateway, registry, fetch, tmp_path):
    settings = settings_for(fetch, gateway.url, tmp_path / "cache")
    folder = fetch.fetch_version(settings, "voice@v1")
    config = folder / "adapter_config.json"
    config.write_text(config.read_text().replace('"r": 8', '"r": 16'))
    (folder / "extra.txt").write_text("left by someone")
    assert fetch.fetch_version(settings, "voice@v1") == folder
    store = registry.resolve("voice@v1").adapter.path
    assert {p.name: sha(p) for p in folder.iterdir()} == {p.name: sha(p) for p in store.iterdir()}
    assert [p.name for p in folder.parent.iterdir()] == ["v1"]  # the stale copy is gone


def test_names_the_gateway_does_not_have_resolve_to_none(gateway, fetch, tmp_path):
    settings = settings_for(fetch, gateway.url, tmp_path / "cache")
    assert fetch.fetch_version(settings, "voice@v9") is None
    assert fetch.fetch_version(settings, "nobody@v1") is None
    for not_ours in ("voice", "tiny-llama", "../etc@v1", "voice@../v1", "Voice@v1", "a@b@c"):
        assert fetch.split_engine_name(not_ours) is None
        assert fetch.fetch_version(settings, not_ours) is None
    assert not (tmp_path / "cache").exists()


def test_wrong_key_or_no_gateway_is_a_clear_error(gateway, fetch, tmp_path):
    for key, words in ((None, "missing API key"), ("k-acme", "may not use admin routes")):
        settings = settings_for(fetch, gateway.url, tmp_path / "cache", key=key)
        with pytest.raises(fetch.AdapterFetchError) as refused:
            fetch.fetch_version(settings, "voice@v1")
        assert "set HYBRID_GATEWAY_KEY on the replica to an admin key" in str(refused.value)
        assert words in str(refused.value)
    closed = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(fetch.AdapterFetchError, match="check HYBRID_GATEWAY_URL on the replica"):
        fetch.fetch_version(settings_for(fetch, closed, tmp_path / "cache"), "voice@v1")


def _closed_port() -> int:
    from tests.helpers.gateway import free_port

    return free_port()


# ---- a gateway that lies: every mismatch is refused and nothing is kept -------------------------


class LyingGateway:
    """A stand-in gateway serving one version, `voice@v1`, whose manifest can disagree with the
    files it sends."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.manifest = {
            "format": "hybrid-adapter-files/1",
            "id": "voice@v1",
            "name": "voice",
            "version": "v1",
            "files": [
                {"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                for n, b in files.items()
            ],
        }
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                base = "/admin/adapters/voice/versions/v1/files"
                if self.path == base:
                    body = json.dumps(owner.manifest).encode()
                elif self.path.startswith(base + "/") and self.path[len(base) + 1 :] in owner.files:
                    body = owner.files[self.path[len(base) + 1 :]]
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def liar():
    server = LyingGateway(
        {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"w" * 5000}
    )
    yield server
    server.close()


def test_liar_telling_the_truth_is_fetched(liar, fetch, tmp_path):
    folder = fetch.fetch_version(settings_for(fetch, liar.url, tmp_path), "voice@v1")
    assert (folder / "adapter_model.safetensors").read_bytes() == b"w" * 5000


@pytest.mark.parametrize(
    ("lie", "words"),
    [
        (
            lambda s: s.files.update({"adapter_model.safetensors": b"x" * 5000}),
            ["adapter_model.safetensors", "has sha256", "its file list says", "refused"],
        ),
        (
            lambda s: s.files.update({"adapter_model.safetensors": b"w" * 6000}),
            ["has more than 5000 bytes, its file list says 5000", "refused"],
        ),
        (
            lambda s: s.files.update({"adapter_model.safetensors": b"w" * 10}),
            ["has 10 bytes, its file list says 5000"],
        ),
        (
            lambda s: s.manifest["files"].append({"name": "../x", "size": 1, "sha256": "0" * 64}),
            ["names a file '../x', not a plain file name"],
        ),
        (lambda s: s.manifest.update({"id": "other@v1"}), ["is for 'other@v1'"]),
        (lambda s: s.manifest.update({"format": "v0"}), ["has format 'v0'", "same Hybrid version"]),
        (
            lambda s: s.manifest.update({"files": s.manifest["files"][1:]}),
            ["no adapter_config.json"],
        ),
        (lambda s: s.files.pop("adapter_config.json"), ["has no such file now"]),
    ],
    ids=["sha256", "longer", "shorter", "path-in-name", "other-id", "format", "no-config", "gone"],
)
def test_liar_is_refused_and_nothing_is_kept(liar, fetch, tmp_path, lie, words):
    lie(liar)
    with pytest.raises(fetch.AdapterFetchError) as refused:
        fetch.fetch_version(settings_for(fetch, liar.url, tmp_path / "cache"), "voice@v1")
    for word in words:
        assert word in str(refused.value)
    kept = [p for p in (tmp_path / "cache").rglob("*")] if (tmp_path / "cache").exists() else []
    assert all(p.is_dir() for p in kept), kept  # at most the empty name folder
    assert not (tmp_path / "cache" / "voice" / "v1").exists()


def test_settings_from_the_replicas_environment(fetch, tmp_path):
    assert fetch.FetchSettings.from_env({}) is None
    settings = fetch.FetchSettings.from_env(
        {
            "HYBRID_GATEWAY_URL": "http://gw:8080/",
            "HYBRID_GATEWAY_KEY": "k",
            "HYBRID_ADAPTER_CACHE": str(tmp_path),
            "HYBRID_FETCH_TIMEOUT_S": "5",
        }
    )
    assert (settings.gateway_url, settings.api_key, settings.cache_dir, settings.timeout_s) == (
        "http://gw:8080",
        "k",
        tmp_path,
        5.0,
    )
    assert "k" not in repr(settings)
    default = fetch.FetchSettings.from_env(
        {"HYBRID_GATEWAY_URL": "http://gw", "XDG_CACHE_HOME": "/c"}
    )
    assert default.cache_dir == Path("/c/hybrid/adapters")
    with pytest.raises(fetch.AdapterFetchError) as bad:
        fetch.FetchSettings.from_env(
            {"HYBRID_GATEWAY_URL": "gw:8080/v1", "HYBRID_FETCH_TIMEOUT_S": "-1"}
        )
    assert "HYBRID_GATEWAY_URL='gw:8080/v1' is not an http(s) URL" in str(bad.value)
    assert "HYBRID_FETCH_TIMEOUT_S='-1' is not a positive number" in str(bad.value)
    with pytest.raises(fetch.AdapterFetchError, match="ends in /v1; give the gateway root"):
        fetch.FetchSettings.from_env({"HYBRID_GATEWAY_URL": "http://gw:8080/v1"})


# ---- inside vLLM: the resolver glue ------------------------------------------------------------


def test_resolver_registers_from_the_environment_and_returns_a_lora_request(
    gateway, monkeypatch, tmp_path
):
    """vLLM's own registry and LoRARequest (importing vLLM takes a few seconds)."""
    import asyncio

    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolverRegistry

    monkeypatch.syspath_prepend(str(GUARD_DIR))
    import hybrid_lora_resolver

    monkeypatch.setattr(LoRAResolverRegistry, "resolvers", {})
    monkeypatch.delenv("HYBRID_GATEWAY_URL", raising=False)
    hybrid_lora_resolver.register()
    assert not LoRAResolverRegistry.get_supported_resolvers()  # off unless configured
    monkeypatch.setenv("HYBRID_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("HYBRID_GATEWAY_KEY", "k-admin")
    monkeypatch.setenv("HYBRID_ADAPTER_CACHE", str(tmp_path / "cache"))
    hybrid_lora_resolver.register()
    resolver = LoRAResolverRegistry.get_resolver("Hybrid gateway")
    found = asyncio.run(resolver.resolve_lora("tiny-llama", "voice@v1"))
    assert isinstance(found, LoRARequest)
    assert (found.lora_name, found.lora_path) == ("voice@v1", str(tmp_path / "cache/voice/v1"))
    assert asyncio.run(resolver.resolve_lora("tiny-llama", "voice@v7")) is None
    monkeypatch.setenv("HYBRID_GATEWAY_KEY", "wrong")
    LoRAResolverRegistry.resolvers.clear()
    hybrid_lora_resolver.register()
    resolver = LoRAResolverRegistry.get_resolver("Hybrid gateway")
    with pytest.raises(ValueError, match="set HYBRID_GATEWAY_KEY"):  # vLLM answers it with 400
        asyncio.run(resolver.resolve_lora("tiny-llama", "voice@v2"))


def test_the_plugin_is_declared_to_vllm():
    entry_points = next(GUARD_DIR.glob("*.dist-info")) / "entry_points.txt"
    assert "hybrid_lora_resolver = hybrid_lora_resolver:register" in entry_points.read_text()


# ---- the gateway's side: a fetching replica is asked by name, never given a path ---------------


class ResolvingEngine:
    """What a vLLM with Hybrid's resolver answers on the routes the engine set uses."""

    def __init__(self, known: set[str]):
        self.known = known
        self.held: dict[str, str] = {}
        self.calls: list[tuple[str, dict | None]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.url.path, body))
        if request.url.path == "/v1/models":
            data = [{"id": "base", "root": "/m", "parent": None}]
            data += [{"id": n, "root": p, "parent": "base"} for n, p in self.held.items()]
            return httpx.Response(200, json={"data": data})
        if request.url.path == "/tokenize":
            model = body["model"]
            if model not in self.known:
                message = f"The model `{model}` does not exist. Valid aliases: base."
                error = {"message": message, "type": "NotFoundError", "param": "model", "code": 404}
                return httpx.Response(404, json={"error": error})
            self.held[model] = f"/replica-cache/{model.replace('@', '/')}"
            return httpx.Response(200, json={"count": 1, "tokens": [1]})
        if request.url.path == "/v1/unload_lora_adapter":
            self.held.pop(body["lora_name"])
            return httpx.Response(200, text="ok")
        return httpx.Response(404, json={"error": {"message": "no route", "code": 404}})


def fetching_set(engine: ResolvingEngine) -> EngineSet:
    client = EngineClient("http://replica", transport=httpx.MockTransport(engine.handle))
    return EngineSet([Replica(client, fetches=True)])


def test_a_fetching_replica_is_asked_by_name_and_never_given_a_path():
    import asyncio

    engine = ResolvingEngine({"voice@v1"})
    engines = fetching_set(engine)

    async def go():
        await engines.refresh()
        await engines.ensure_adapter("voice@v1", "/gateway/registry/store/voice/v1")
        await engines.refresh()  # now listed under the replica's own cache folder
        await engines.ensure_adapter("voice@v1", "/gateway/registry/store/voice/v1")
        await engines.unload_adapter("voice@v1")

    asyncio.run(go())
    paths = [path for path, _ in engine.calls]
    assert "/v1/load_lora_adapter" not in paths
    assert paths.count("/tokenize") == 1  # held after the refresh: not fetched again
    assert engine.calls[paths.index("/tokenize")][1] == {"model": "voice@v1", "prompt": "Hi"}
    assert "/gateway/registry" not in json.dumps(engine.calls)
    assert paths[-1] == "/v1/unload_lora_adapter" and not engine.held


def test_a_replica_without_the_resolver_gets_a_fix_in_the_error():
    import asyncio

    engines = fetching_set(ResolvingEngine(set()))
    with pytest.raises(AdapterLoadError) as refused:
        asyncio.run(engines.ensure_adapter("voice@v1", "/gateway/registry/store/voice/v1"))
    message = str(refused.value)
    assert "could not fetch adapter 'voice@v1' from the gateway" in message
    assert "does not exist" in message
    assert "HYBRID_GATEWAY_URL" in message and "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in message


def test_remote_engines_config_turns_fetching_on():
    from serving.engine import RemoteEngineConfig

    remote = RemoteEngineConfig(urls=("http://a:8000", "http://b:8000"), fetch_adapters=True)
    assert [r.fetches for r in EngineSet.build(remote=remote).replicas] == [True, True]
    plain = RemoteEngineConfig(urls=("http://a:8000",))
    assert [r.fetches for r in EngineSet.build(remote=plain).replicas] == [False]
