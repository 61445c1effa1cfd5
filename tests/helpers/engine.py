"""Adapter calls on a supervised vLLM server from sync test code, through the one client
(`EngineClient`): the supervisor itself does not talk to vLLM's adapter API."""

from __future__ import annotations

import asyncio
from pathlib import Path

from serving.engine import EngineClient, EngineProcess


async def _client_call(engine: EngineProcess, method: str, *args):
    async with EngineClient(engine.url, api_key=engine.api_key, timeout_s=120) as client:
        return await getattr(client, method)(*args)


def served_adapters(engine: EngineProcess) -> dict[str, str]:
    """What the server lists as adapters right now (name -> folder)."""
    return asyncio.run(_client_call(engine, "adapters"))


def load_adapter(engine: EngineProcess, name: str, path: str | Path) -> None:
    asyncio.run(_client_call(engine, "load_lora_adapter", name, str(path)))


def unload_adapter(engine: EngineProcess, name: str) -> None:
    asyncio.run(_client_call(engine, "unload_lora_adapter", name))
