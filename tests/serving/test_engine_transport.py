"""The engine client over real sockets (serving/engine/transport.py: aiohttp behind httpx's
transport interface), in seconds: the fake engine served by uvicorn in a thread, or a socket
that misbehaves. The rest of the engine client's behaviour is tested with httpx's
MockTransport (test_engine_client.py) and against the real vLLM (test_engine_vllm.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from serving.engine import EngineClient
from serving.engine.transport import KEEPALIVE_S
from serving.errors import EngineUnavailable
from tests.helpers.gateway import ServerThread, free_port
from tests.serving.fake_engine import FakeEngine

CHAT = {"model": "base", "messages": [{"role": "user", "content": "hello there"}]}


def test_a_closed_port_is_an_unavailable_engine():
    client = EngineClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(EngineUnavailable, match=r"did not answer GET /v1/models \(ConnectError"):
        asyncio.run(client.list_models())


def test_connections_are_reused_then_dropped_before_the_engines_keepalive():
    """Requests one after the other share a connection; one idle for KEEPALIVE_S (2 s, below
    vLLM's 5 s) is not used again, so no request goes out on a connection the engine closes."""
    engine = FakeEngine()
    with ServerThread(engine.app) as server:
        client = EngineClient(server.url)

        async def scenario() -> None:
            for _ in range(3):
                answer = await client.generate("/v1/chat/completions", CHAT, timeout_s=30)
                assert answer["choices"][0]["message"]["content"] == "base says: hello there"
            assert len(engine.connections) == 1, engine.connections
            await asyncio.sleep(KEEPALIVE_S + 0.5)
            await client.generate("/v1/chat/completions", CHAT, timeout_s=30)
            assert len(engine.connections) == 2, engine.connections
            await client.aclose()

        asyncio.run(scenario())


def test_one_client_serves_several_event_loops():
    """A client's connections belong to an event loop; a client used from another one (a
    `run_sync`, a test's second loop) opens its own instead of reusing dead ones."""
    engine = FakeEngine()
    with ServerThread(engine.app) as server:
        client = EngineClient(server.url)
        for _ in range(2):
            assert [m.id for m in asyncio.run(client.list_models())] == ["base"]
        asyncio.run(client.aclose())


def hang_up_after(answer: bytes) -> tuple[str, threading.Thread]:
    """A server that reads one request, sends `answer` and closes the connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread


def test_an_engine_that_hangs_up_mid_answer_is_unavailable():
    url, thread = hang_up_after(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    client = EngineClient(url)
    with pytest.raises(EngineUnavailable, match=r"did not answer POST /v1/chat/completions"):
        asyncio.run(client.generate("/v1/chat/completions", CHAT, timeout_s=30))
    thread.join(5)


def test_closing_a_stream_early_closes_its_connection():
    """vLLM aborts a generation when its connection closes: a stream the gateway stops
    reading (its client went away) must not go back to the pool."""
    engine = FakeEngine()
    engine.word_delay_s = 0.5
    with ServerThread(engine.app) as server:
        client = EngineClient(server.url)

        async def scenario() -> None:
            body = {**CHAT, "stream": True}
            response = await client.open_stream("/v1/chat/completions", body, timeout_s=30)
            async for chunk in response.aiter_raw():
                assert chunk.startswith(b"data: ")
                break
            await response.aclose()
            started = time.monotonic()
            await client.generate("/v1/chat/completions", CHAT, timeout_s=30)
            assert time.monotonic() - started < 5
            assert len(engine.connections) == 2, engine.connections  # a new one
            await client.aclose()

        asyncio.run(scenario())


def test_a_proxy_from_the_environment_is_used(monkeypatch):
    """HTTP_PROXY applies to engine requests, as it did when httpx carried them: the engine's
    host name here does not even resolve, only the proxy (the fake engine) answers."""
    engine = FakeEngine()
    with ServerThread(engine.app) as server:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", server.url)
        client = EngineClient("http://engine.invalid:8000")

        async def scenario() -> list[str]:
            try:
                return [m.id for m in await client.list_models()]
            finally:
                await client.aclose()

        assert asyncio.run(scenario()) == ["base"]
