"""EngineClient and EngineSet against httpx.MockTransport servers that answer like vLLM 0.32
(bodies copied from a real server; see serving/engine/protocol.py)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from serving.engine import EngineClient, EngineSet, Replica
from serving.errors import (
    AdapterAlreadyLoaded,
    AdapterLoadError,
    AdapterNotLoaded,
    EngineRequestError,
    EngineUnavailable,
    InvalidAdapterName,
    NoHealthyEngine,
)

RANK_ERROR = (
    "Call to add_lora method failed: Worker failed with error 'LoRA rank 16 is greater than "
    "max_lora_rank 8.', please check the stack trace above for the root cause"
)


def vllm_error(status: int, kind: str, message: str) -> httpx.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return httpx.Response(status, json=body)


class FakeVllm:
    """The routes EngineClient uses, with vLLM's answers; counts the calls."""

    def __init__(self, base: str = "tiny", *, down: bool = False):
        self.base = base
        self.adapters: dict[str, str] = {}
        self.down = down
        self.calls: list[str] = []
        self.auth: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        self.auth.append(request.headers.get("authorization"))
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        route = request.url.path
        if route == "/health":
            return httpx.Response(200)
        if route == "/v1/models":
            cards = [{"id": self.base, "root": "/m", "parent": None}]
            cards += [{"id": n, "root": p, "parent": self.base} for n, p in self.adapters.items()]
            return httpx.Response(200, json={"object": "list", "data": cards})
        body = json.loads(request.content)
        name = body.get("lora_name")
        if route == "/v1/load_lora_adapter":
            path = body["lora_path"]
            if name in self.adapters:
                return vllm_error(
                    400,
                    "InvalidUserInput",
                    f"The lora adapter '{name}' has already been loaded. If you want to load the "
                    "adapter in place, set 'load_inplace' to True.",
                )
            if path.endswith("rank16"):
                return vllm_error(500, "InternalServerError", RANK_ERROR)
            if "missing" in path:
                return vllm_error(
                    404, "NotFoundError", f"Loading lora {name} failed: No adapter found for <path>"
                )
            self.adapters[name] = path
            return httpx.Response(200, text=f"Success: LoRA adapter '{name}' added successfully.")
        if route == "/v1/unload_lora_adapter":
            if self.adapters.pop(name, None) is None:
                return vllm_error(
                    404, "NotFoundError", f"The lora adapter '{name}' cannot be found."
                )
            return httpx.Response(200, text="Success")
        return httpx.Response(404, json={"detail": "Not Found"})


def client_for(fake: FakeVllm, url: str = "http://engine:8000", **kwargs) -> EngineClient:
    return EngineClient(url, transport=httpx.MockTransport(fake), **kwargs)


def run(coro):
    return asyncio.run(coro)


def test_models_health_and_adapters_round_trip():
    fake = FakeVllm()

    async def scenario():
        async with client_for(fake, api_key="k") as client:
            await client.health()
            assert [m.id for m in await client.list_models()] == ["tiny"]
            await client.load_lora_adapter("voice@v1", "/adapters/voice")
            models = await client.list_models()
            assert [(m.id, m.parent, m.is_adapter) for m in models] == [
                ("tiny", None, False),
                ("voice@v1", "tiny", True),
            ]
            assert await client.adapters() == {"voice@v1": "/adapters/voice"}
            await client.unload_lora_adapter("voice@v1")
            assert await client.adapters() == {}

    run(scenario())
    assert set(fake.auth) == {"Bearer k"}


def test_missing_folder_is_an_adapter_load_error_with_vllms_message_the_path_and_the_fix():
    async def scenario():
        async with client_for(FakeVllm()) as client:
            await client.load_lora_adapter("voice", "/data/missing")

    with pytest.raises(AdapterLoadError) as info:
        run(scenario())
    error = info.value
    assert str(error) == (
        "engine at http://engine:8000 could not load adapter 'voice' from /data/missing "
        "(404 NotFoundError: Loading lora voice failed: No adapter found for <path>); the folder "
        "must hold adapter_config.json and adapter_model.safetensors as written by PEFT's "
        "save_pretrained, at a path the engine's machine can read"
    )
    assert (error.status_code, error.error_type) == (404, "NotFoundError")
    assert error.engine_message == "Loading lora voice failed: No adapter found for <path>"
    assert isinstance(error, ValueError)  # a user mistake: the gateway answers 4xx


def test_rank_too_high_says_which_setting_to_raise():
    async def scenario():
        async with client_for(FakeVllm()) as client:
            await client.load_lora_adapter("big", "/adapters/rank16")

    with pytest.raises(AdapterLoadError) as info:
        run(scenario())
    assert "LoRA rank 16 is greater than max_lora_rank 8" in str(info.value)
    assert "start the engine with a larger max_lora_rank (EngineConfig.max_lora_rank)" in str(
        info.value
    )
    assert info.value.status_code == 500


def test_duplicate_load_and_unknown_unload_are_typed():
    fake = FakeVllm()
    fake.adapters["voice"] = "/a"

    async def load():
        async with client_for(fake) as client:
            await client.load_lora_adapter("voice", "/b")

    async def unload():
        async with client_for(fake) as client:
            await client.unload_lora_adapter("ghost")

    with pytest.raises(AdapterAlreadyLoaded, match="already loaded on http://engine:8000"):
        run(load())
    with pytest.raises(AdapterNotLoaded) as info:
        run(unload())
    assert str(info.value).startswith("adapter 'ghost' is not loaded on http://engine:8000 (404")
    assert isinstance(info.value, LookupError)


def test_bad_names_are_refused_before_any_request():
    fake = FakeVllm()

    async def scenario(name: str):
        async with client_for(fake) as client:
            await client.load_lora_adapter(name, "/a")

    for name in ("", "two words", "tab\there"):
        with pytest.raises(InvalidAdapterName, match="use 1-256 characters without spaces"):
            run(scenario(name))
    assert fake.calls == []


def test_unreachable_and_odd_servers():
    async def down():
        async with client_for(FakeVllm(down=True)) as client:
            assert not await client.is_healthy()
            await client.list_models()

    with pytest.raises(EngineUnavailable, match=r"did not answer GET /v1/models \(ConnectError"):
        run(down())

    def not_vllm(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"hello": "world"})
        return httpx.Response(401, json={"error": "Unauthorized"})

    async def odd():
        async with EngineClient("http://x", transport=httpx.MockTransport(not_vllm)) as client:
            with pytest.raises(EngineRequestError, match="set the engine's api_key"):
                await client.load_lora_adapter("a", "/a")
            await client.list_models()

    with pytest.raises(EngineRequestError, match="is this URL a vLLM OpenAI-compatible server"):
        run(odd())


class Ledger:
    """Stands for the `AdapterLedger` of a supervised replica."""

    def __init__(self):
        self.adapters: dict[str, str] = {}
        self.detached = False

    def remember(self, name, path):
        self.adapters[name] = str(path)

    def forget(self, name):
        self.adapters.pop(name, None)

    def detach(self):
        self.detached = True


def engine_set(*fakes: FakeVllm, ledger: Ledger | None = None) -> EngineSet:
    replicas = [Replica(client_for(f, f"http://r{i}")) for i, f in enumerate(fakes)]
    replicas[0].ledger = ledger
    return EngineSet(replicas)


def test_engine_set_loads_on_the_emptiest_replica_once_and_reuses_it():
    busy, idle = FakeVllm(), FakeVllm()
    busy.adapters = {"p": "/p", "q": "/q"}
    ledger = Ledger()

    async def scenario():
        engines = engine_set(busy, idle, ledger=ledger)
        await engines.refresh()
        first, second = await asyncio.gather(
            engines.ensure_adapter("voice", "/voice"), engines.ensure_adapter("voice", "/voice")
        )
        assert first is second and first.url == "http://r1"
        assert (await engines.ensure_adapter("p", "/p")).url == "http://r0"
        assert engines.pick("voice").url == "http://r1"
        await engines.aclose()

    run(scenario())
    assert idle.calls.count("POST /v1/load_lora_adapter") == 1
    assert busy.calls.count("POST /v1/load_lora_adapter") == 0
    assert idle.adapters == {"voice": "/voice"}
    # r1 has no ledger; r0 serves p from what it held: p must come back after a restart
    assert ledger.adapters == {"p": "/p"} and ledger.detached


def test_engine_set_routes_around_a_dead_replica_and_tells_the_ledger():
    dead, alive = FakeVllm(down=True), FakeVllm()
    ledger = Ledger()

    async def scenario():
        engines = engine_set(alive, dead, ledger=ledger)
        engines.replicas[0].adapters = {"x": "/x"}  # make the dead one the emptiest
        replica = await engines.ensure_adapter("voice", "/voice")
        assert replica.url == "http://r0"
        assert [s.healthy for s in engines.states()] == [True, False]
        assert await engines.unload_adapter("voice") == ["http://r0"]
        with pytest.raises(AdapterNotLoaded, match="no replica holds adapter 'voice'"):
            await engines.unload_adapter("voice")
        engines.mark_unhealthy("http://r0")
        with pytest.raises(NoHealthyEngine):
            await engines.ensure_adapter("voice", "/voice")
        await engines.refresh()  # r0 answers again, r1 still does not
        assert [s.healthy for s in engines.states()] == [True, False]
        await engines.aclose()

    run(scenario())
    assert dead.calls.count("POST /v1/load_lora_adapter") == 1
    assert ledger.adapters == {}  # remembered on load, forgotten on unload


def test_engine_set_takes_an_adapter_loaded_behind_its_back():
    fake = FakeVllm()
    fake.adapters["voice"] = "/voice"  # e.g. a supervisor restart re-registered it

    async def scenario():
        engines = engine_set(fake)
        replica = await engines.ensure_adapter("voice", "/voice")
        assert replica.adapters == {"voice": "/voice"}
        with pytest.raises(AdapterLoadError):
            await engines.ensure_adapter("other", "/missing")
        await engines.aclose()

    run(scenario())


def test_an_adapter_held_from_another_folder_is_loaded_again_from_ours():
    """Two registries sharing one engine (or a registry rebuilt) may both say `voice@v1`: the
    name alone does not say whose weights the engine holds, the folder does."""
    fake = FakeVllm()
    fake.adapters["voice@v1"] = "/other-registry/voice/v1"
    ledger = Ledger()

    async def scenario():
        engines = engine_set(fake, ledger=ledger)
        await engines.refresh()
        replica = await engines.ensure_adapter("voice@v1", "/ours/voice/v1")
        assert replica.adapters == {"voice@v1": "/ours/voice/v1"}
        await engines.ensure_adapter("voice@v1", "/ours/voice/v1")  # now ours: nothing to do
        await engines.aclose()

    run(scenario())
    assert fake.adapters == {"voice@v1": "/ours/voice/v1"}
    assert fake.calls.count("POST /v1/unload_lora_adapter") == 1
    assert fake.calls.count("POST /v1/load_lora_adapter") == 1
    assert ledger.adapters == {"voice@v1": "/ours/voice/v1"}


def test_engine_set_needs_a_replica():
    with pytest.raises(ValueError, match="at least one replica"):
        EngineSet([])


def test_failover_retries_on_the_next_replica_only_when_one_does_not_answer():
    """EngineSet.failover: a replica that does not answer is marked unhealthy and the attempt
    runs again (it picks another); an engine's refusal and 'no healthy replica' are final."""
    engines = engine_set(FakeVllm(), FakeVllm(), FakeVllm())
    urls = [r.url for r in engines.replicas]
    tried: list[str] = []

    async def attempt(fails: set[str], refusal: Exception | None = None) -> str:
        replica = engines.pick()
        tried.append(replica.url)
        if refusal is not None:
            raise refusal
        if replica.url in fails:
            raise EngineUnavailable(f"{replica.url} did not answer", url=replica.url)
        return replica.url

    async def scenario():
        assert await engines.failover(lambda: attempt({urls[0]})) == urls[1]
        assert tried == urls[:2] and [s.healthy for s in engines.states()] == [False, True, True]
        tried.clear()
        refused = EngineRequestError("bad request", url=urls[1], status_code=400)
        with pytest.raises(EngineRequestError):
            await engines.failover(lambda: attempt(set(), refused))
        assert tried == [urls[1]]  # not retried: every replica would refuse it
        tried.clear()
        with pytest.raises(EngineUnavailable, match=urls[2]):
            await engines.failover(lambda: attempt({urls[1], urls[2]}))
        assert tried == urls[1:] and not any(s.healthy for s in engines.states())
        with pytest.raises(NoHealthyEngine):
            await engines.failover(lambda: attempt(set()))
        await engines.aclose()

    run(scenario())
