"""Scale-out without a shared file system, for real: a vLLM replica runs in its own mount
namespace (`unshare --mount`) with tmpfs mounted over the gateway's registry folder and over the
adapters' source folders, so it cannot read a single adapter file from this disk. It is attached
to a gateway as a remote engine with `fetch_adapters`, and runs Hybrid's LoRA resolver plugin
(HYBRID_GATEWAY_URL / _KEY / HYBRID_ADAPTER_CACHE in its environment). Every adapter it serves it
fetched from the gateway's admin route; answers equal PEFT's greedy tokens for the registered
weights, and promote / unload still drain under load with no failed request.

One vLLM boot of its own (~60-90 s), in addition to the session's shared server."""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from serving.engine import EngineClient, EngineConfig, EngineProcess, RemoteEngineConfig
from serving.errors import AdapterLoadError
from serving.gateway import ApiKey, AuthConfig, GatewayConfig, create_app, hash_key
from serving.runtime import ServingRuntime
from tests.helpers.adapters import peft_greedy, random_lora
from tests.helpers.gateway import ServerThread, free_port
from tests.helpers.reliability import record

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]

ADMIN_KEY = "k-admin-scaleout"
USER_KEY = "k-user-scaleout"
KEYS = AuthConfig(
    api_keys=(ApiKey(name="user", sha256=hash_key(USER_KEY)),),
    admin_keys=(ApiKey(name="ops", sha256=hash_key(ADMIN_KEY)),),
)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 8


def _can_unshare() -> bool:
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def hidden_python(folder: Path, hide: list[Path]) -> Path:
    """An interpreter for EngineConfig.python: vLLM's python, started in a new mount namespace
    with an empty tmpfs over each of `hide` (private propagation: nothing leaks to the host)."""
    mounts = " && ".join(f"mount -t tmpfs hidden {shlex.quote(str(p))}" for p in hide)
    inner = f'{mounts} && exec {shlex.quote(sys.executable)} "$@"'
    script = folder / "python-hidden"
    script.write_text(
        "#!/bin/sh\n"
        f'exec unshare --mount --propagation private /bin/sh -c {shlex.quote(inner)} sh "$@"\n'
    )
    script.chmod(0o755)
    return script


@pytest.fixture(scope="module")
def scaleout(tiny_llama_dir, tmp_path_factory):
    """A replica that cannot see the registry, a gateway with keys that it fetches from."""
    if not _can_unshare():
        pytest.skip("needs `unshare --mount` (root, or a user namespace) to hide the registry")
    import torch

    torch.set_num_threads(2)  # random_lora and PEFT's reference run here, beside vLLM
    root = tmp_path_factory.mktemp("scaleout")
    sources = root / "sources"
    # alpha 128 on rank 8: the adapter dominates the logits, so greedy tokens have wide margins
    adapters = {
        version: random_lora(tiny_llama_dir, sources / version, rank=8, seed=seed, alpha=128)
        for version, seed in (("v1", 21), ("v2", 22))
    }
    registry = root / "registry"
    registry.mkdir()
    cache = root / "replica-cache"
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    replica = EngineProcess(
        EngineConfig(
            model=str(tiny_llama_dir),
            served_model_name="tiny-llama",
            max_loras=2,
            max_lora_rank=8,
            max_cpu_loras=2,
            max_model_len=1024,
            dtype="float32",
            kv_cache_gib=1,
            python=hidden_python(root, [registry, sources]),
            env={
                "HYBRID_GATEWAY_URL": gateway_url,
                "HYBRID_GATEWAY_KEY": ADMIN_KEY,
                "HYBRID_ADAPTER_CACHE": str(cache),
            },
            log_file=root / "replica.log",
            startup_timeout_s=400,
        )
    )
    replica.start()
    print(f"\nreplica ready after {replica.last_ready_s:.1f} s (log: {replica.log_path})")
    try:
        runtime = ServingRuntime(
            registry_root=registry,
            remote=RemoteEngineConfig(
                urls=(replica.url,), api_key=replica.api_key, timeout_s=120, fetch_adapters=True
            ),
            base_model=tiny_llama_dir,
            gateway=GatewayConfig(auth=KEYS, drain_timeout_s=60),
        )
        runtime.start()
        state = runtime.gateway_state()
        with ServerThread(create_app(state), port=gateway_port) as gateway:
            gateway.state, gateway.replica, gateway.cache = state, replica, cache
            gateway.registry, gateway.adapters = registry, adapters
            yield gateway
    finally:
        replica.stop()


def admin(gateway, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(
        method, gateway.url + "/admin" + path, json=body, headers=ADMIN, timeout=180
    )


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=USER_KEY, max_retries=0)


def greedy(gateway, model: str, **extra):
    return client(gateway).chat.completions.create(
        model=model,
        messages=PROMPT,
        max_tokens=NEW_TOKENS,
        temperature=0,
        extra_body={"min_tokens": NEW_TOKENS, **extra},
    )


def replica_adapters(gateway) -> dict[str, str]:
    async def ask():
        async with EngineClient(gateway.replica.url, api_key=gateway.replica.api_key) as c:
            return await c.adapters()

    return asyncio.run(ask())


def sha_tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_replica_serves_adapters_it_could_only_fetch_from_the_gateway(scaleout, tiny_llama_dir):
    gateway = scaleout
    # Registering load-tests v1 on the replica: the replica fetches it through the admin route.
    for version, promote in (("v1", True), ("v2", False)):
        body = {"path": str(gateway.adapters[version]), "name": "voice", "version": version}
        registered = admin(gateway, "POST", "/adapters", {**body, "promote": promote})
        assert registered.status_code == 201, registered.text
    store = gateway.registry / "store" / "voice" / "v1"
    assert (store / "adapter_model.safetensors").is_file()  # on the gateway's disk ...

    async def load_by_path():  # ... which the replica cannot read
        async with EngineClient(gateway.replica.url, api_key=gateway.replica.api_key) as c:
            await c.load_lora_adapter("probe", store)

    with pytest.raises(AdapterLoadError, match="No adapter found"):
        asyncio.run(load_by_path())
    mounts = Path(f"/proc/{gateway.replica.pid}/mounts").read_text().splitlines()
    assert any(f" {gateway.registry} tmpfs " in line for line in mounts), mounts

    base = greedy(gateway, "tiny-llama", return_token_ids=True)
    answer = greedy(gateway, "voice", return_token_ids=True)
    assert answer.model == "voice@v1"
    prompt_ids = answer.model_extra["prompt_token_ids"]
    tokens = answer.choices[0].model_extra["token_ids"]
    assert tokens != base.choices[0].model_extra["token_ids"]
    assert tokens == peft_greedy(tiny_llama_dir, gateway.adapters["v1"], prompt_ids, NEW_TOKENS)
    pinned = greedy(
        gateway, "voice@v2", return_token_ids=True
    )  # loaded again on first use, from the cache
    assert pinned.choices[0].model_extra["token_ids"] == peft_greedy(
        tiny_llama_dir, gateway.adapters["v2"], prompt_ids, NEW_TOKENS
    )

    held = replica_adapters(gateway)
    assert held == {
        "voice@v1": str(gateway.cache / "voice" / "v1"),
        "voice@v2": str(gateway.cache / "voice" / "v2"),
    }
    for version in ("v1", "v2"):
        fetched = sha_tree(gateway.cache / "voice" / version)
        assert fetched == sha_tree(gateway.registry / "store" / "voice" / version)
    assert not [p for p in (gateway.cache / "voice").iterdir() if p.name.startswith(".")]


@pytest.mark.reliability
def test_promote_and_unload_still_drain_on_a_fetching_replica(scaleout):
    """Clients ask for `voice` (streamed and not) while it is promoted back and forth and
    unloaded; every request succeeds, each answer is the one of the version it names, and the
    replica ends up holding only the current version (fetched again after the unload)."""
    gateway = scaleout
    expected = {
        f"voice@{v}": greedy(gateway, f"voice@{v}").choices[0].message.content for v in ("v1", "v2")
    }
    assert expected["voice@v1"] != expected["voice@v2"]
    results: list[tuple[str, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    async def one_client(index: int) -> None:
        c = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=USER_KEY, max_retries=0)
        kwargs = dict(
            model="voice",
            messages=PROMPT,
            max_tokens=NEW_TOKENS,
            temperature=0,
            extra_body={"min_tokens": NEW_TOKENS},
        )
        while not stop.is_set():
            try:
                if index % 2:
                    stream = await c.chat.completions.create(stream=True, **kwargs)
                    parts, model = [], None
                    async for chunk in stream:
                        model = chunk.model
                        parts.extend(ch.delta.content or "" for ch in chunk.choices)
                    results.append((model, "".join(parts)))
                else:
                    answer = await c.chat.completions.create(**kwargs)
                    results.append((answer.model, answer.choices[0].message.content))
            except Exception as exc:  # counted, not raised: the test reports all of them
                failures.append(f"{type(exc).__name__}: {exc}")
        await c.close()

    async def clients() -> None:
        await asyncio.gather(*(one_client(i) for i in range(2)))

    runner = threading.Thread(target=asyncio.run, args=(clients(),))
    runner.start()
    try:
        for version in ("v2", None, "v1"):
            time.sleep(1.5)
            if version is None:
                response = admin(gateway, "POST", "/adapters/voice/unload")
            else:
                response = admin(gateway, "POST", "/adapters/voice/promote", {"version": version})
            assert response.status_code == 200, response.text
        time.sleep(1.5)
    finally:
        stop.set()
        runner.join(timeout=180)
    assert not runner.is_alive(), "clients still running 180 s after the stop"
    asyncio.run(asyncio.wait_for(_settle(gateway), 120))

    served = {model for model, _ in results}
    print(f"\n{len(results)} requests during 3 swaps; served by {sorted(served)}")
    assert failures == []
    assert served == {"voice@v1", "voice@v2"}
    assert [(m, t) for m, t in results if expected.get(m) != t] == []
    assert set(replica_adapters(gateway)) == {"voice@v1"}  # v2 drained and unloaded
    listing = admin(gateway, "GET", "/adapters").json()["adapters"]
    assert all(a["in_flight"] == 0 for a in listing)
    record(
        "Faults",
        "vLLM replica that cannot read the registry (own mount namespace) serves adapters "
        "fetched from the gateway; promote, unload, promote under load",
        requests=len(results),
        failed=len(failures),
        wrong_version=0,
    )


async def _settle(gateway) -> None:
    """Wait for the gateway's background unloads (run on its own loop, so poll)."""
    while gateway.state.manager._background:
        await asyncio.sleep(0.2)


def test_weights_the_gateway_would_refuse_never_reach_the_replica(scaleout):
    """A registered version whose weights turned NaN on the gateway's disk: the gateway refuses
    it for its own requests, and a request sent straight to the replica gets the same refusal
    through the resolver (400 with the reason), with nothing fetched into the replica's cache."""
    from safetensors.torch import load_file, save_file

    gateway = scaleout
    body = {"path": str(gateway.adapters["v2"]), "name": "fragile"}
    assert admin(gateway, "POST", "/adapters", body).status_code == 201
    assert admin(gateway, "POST", "/adapters/fragile/unload").status_code == 200
    shutil.rmtree(gateway.cache / "fragile")  # the load test fetched it: start from nothing
    weights = gateway.registry / "store" / "fragile" / "v1" / "adapter_model.safetensors"
    tensors = load_file(weights)
    tensors[next(iter(tensors))][0, 0] = float("nan")
    save_file(tensors, weights)

    with pytest.raises(openai.UnprocessableEntityError) as refused:
        greedy(gateway, "fragile")
    assert refused.value.code == "adapter_load_failed"
    direct = httpx.post(
        gateway.replica.url + "/v1/chat/completions",
        json={"model": "fragile@v1", "messages": PROMPT, "max_tokens": 2},
        headers={"Authorization": f"Bearer {gateway.replica.api_key}"},
        timeout=120,
    )
    assert direct.status_code == 400, direct.text
    message = direct.json()["error"]["message"]
    assert "answered 422 for 'fragile@v1'" in message and "non-finite" in message, message
    assert not (gateway.cache / "fragile").exists() or not any(
        (gateway.cache / "fragile").iterdir()
    )
    assert "fragile@v1" not in replica_adapters(gateway)
    assert greedy(gateway, "voice").choices[0].message.content  # the others still serve
