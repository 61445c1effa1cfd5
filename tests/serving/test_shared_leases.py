"""Leases shared by gateway processes (serving/adapters/leases.py), in seconds: two
`AdapterManager`s over one fake engine and one lease folder stand for two workers (they share
the process's lease table, as POSIX locks are the process's), and a second Python process holds
leases for real. The same behaviour through `hybrid serve`: tests/serving/test_gateway_workers.py
(--workers) and tests/serving/test_gateway_hosts.py (separate gateways, one lease_dir)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from serving.adapters.leases import DrainTimeout, SharedLeases
from serving.adapters.manager import AdapterBusy, AdapterManager
from serving.engine.client import EngineClient
from serving.engine.replicas import EngineSet, Replica
from tests.serving.fake_engine import FakeEngine


def worker(registry, engine: FakeEngine, folder) -> AdapterManager:
    client = EngineClient("http://fake-engine", transport=httpx.ASGITransport(engine.app))
    return AdapterManager(
        registry, EngineSet([Replica(client)]), engine.base, shared=SharedLeases(folder)
    )


def test_a_drain_waits_for_holds_and_blocks_new_ones(tmp_path):
    leases = SharedLeases(tmp_path)

    async def scenario():
        first = await leases.hold("voice@v1")
        with pytest.raises(DrainTimeout):
            async with leases.drained("voice@v1", 0.2):
                raise AssertionError("drained while a hold exists")
        entered = asyncio.Event()

        async def drain():
            async with leases.drained("voice@v1", 10) as state:
                entered.set()
                await asyncio.sleep(0.2)
            return state.generation

        draining = asyncio.create_task(drain())
        await asyncio.sleep(0.1)
        late = asyncio.create_task(leases.hold("voice@v1"))  # must wait behind the drain
        await asyncio.sleep(0.1)
        assert not entered.is_set() and not late.done()
        first.release()
        assert await draining == 1
        second = await late
        assert second.generation == 1 and first.generation == 0
        second.release()

    asyncio.run(scenario())


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from serving.adapters.leases import SharedLeases

    async def main():
        leases = SharedLeases(sys.argv[1])
        first, second = await leases.hold("voice@v1"), await leases.hold("voice@v1")
        first.release()  # one of the process's two leases: the name is still held
        print("holding", flush=True)
        sys.stdin.readline()
        second.release()
        print("released", flush=True)
        sys.stdin.readline()

    asyncio.run(main())
    """
)


def test_a_drain_waits_for_another_process_until_its_last_lease_ends(tmp_path):
    """POSIX locks belong to a process and closing any descriptor drops them all: releasing one
    of a process's two leases must not free the name for a drain elsewhere."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    leases = SharedLeases(tmp_path)

    async def drain(timeout_s: float) -> int | None:
        async with leases.drained("voice@v1", timeout_s) as state:
            pass
        return state.generation

    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(DrainTimeout):
            asyncio.run(drain(0.3))
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert asyncio.run(drain(10)) == 1
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()


def test_promote_in_one_worker_drains_the_other_workers_requests(voice_registry, tmp_path):
    engine = FakeEngine()
    a, b = worker(voice_registry, engine, tmp_path), worker(voice_registry, engine, tmp_path)

    async def scenario():
        old = await b.lease("voice")  # worker b serves v1; worker a never saw it
        assert old.target.engine_name == "voice@v1" and "voice@v1" in engine.adapters
        promotion = await a.promote("voice", "v2")
        assert promotion.retiring  # a asked the engine what it holds
        new = await b.lease("voice")
        assert new.target.engine_name == "voice@v2"
        await asyncio.sleep(0.3)
        assert "voice@v1" in engine.adapters  # b's request still runs on it
        old.release()
        await a.settle()
        assert "voice@v1" not in engine.adapters and "voice@v2" in engine.adapters
        new.release()
        # b still believes v1 is loaded; the new generation tells it otherwise: loaded again.
        pinned = await b.lease("voice@v1")
        assert "voice@v1" in engine.adapters
        with pytest.raises(AdapterBusy, match="in flight on the gateway's workers after 0 s"):
            await a.unload("voice@v1", timeout_s=0.2)
        pinned.release()
        assert await a.unload("voice@v1", timeout_s=10) == ["voice@v1"]
        assert "voice@v1" not in engine.adapters
        for manager in (a, b):
            await manager.engines.aclose()

    asyncio.run(scenario())


def test_an_unload_elsewhere_holds_new_requests_until_it_is_done(voice_registry, tmp_path):
    engine = FakeEngine()
    a, b = worker(voice_registry, engine, tmp_path), worker(voice_registry, engine, tmp_path)

    async def scenario():
        running = await b.lease("voice")
        unload = asyncio.create_task(a.unload("voice", timeout_s=10))
        await asyncio.sleep(0.2)
        arriving = asyncio.create_task(b.lease("voice"))  # waits at the drain's gate
        await asyncio.sleep(0.2)
        assert not unload.done() and not arriving.done()
        running.release()
        assert await unload == ["voice@v1"]
        relet = await arriving  # then loads it again, and is served
        assert "voice@v1" in engine.adapters
        relet.release()
        for manager in (a, b):
            await manager.engines.aclose()

    asyncio.run(scenario())
