"""Run a gateway: an app with a real uvicorn server on a loopback port in a background thread,
or `hybrid serve CONFIG` as a user runs it, in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HYBRID = [sys.executable, "-m", "hybrid.cli"]


def start_serve(
    config: Path, log: Path, cwd: Path | None = None, args: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`hybrid serve CONFIG [ARGS]` in its own session (in `cwd` if given), output in `log`."""
    return subprocess.Popen(
        [*HYBRID, "serve", str(config), *args],
        cwd=cwd,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Until `url`/ready answers 200; fails with the log if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"hybrid serve exited:\n{log.read_text()}"
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"hybrid serve not ready:\n{log.read_text()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """`with ServerThread(app) as server:` serves `app` at `server.url` until the block ends."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if not self.thread.is_alive():
                raise RuntimeError("the gateway thread died while starting")
            time.sleep(0.05)
        raise TimeoutError(f"gateway at {self.url} did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


@contextmanager
def serve_apps(engine, registry, pipelines: list) -> Iterator[ServerThread]:
    """A gateway for `pipelines` (apps) on the supervised vLLM `engine`, with the adapters of
    `registry`, served on a loopback port until the block ends."""
    from hybrid.apps.composer import AppComposer
    from serving.adapters.manager import AdapterManager
    from serving.engine import EngineSet
    from serving.gateway import GatewayConfig, GatewayMetrics, GatewayState, create_app

    metrics = GatewayMetrics()
    manager = AdapterManager(
        registry, EngineSet.build(supervised=engine), engine.config.base_model_name
    )
    composer = AppComposer(pipelines, manager.base_name, metrics.registry)
    state = GatewayState.build(GatewayConfig(), manager, composers=[composer], metrics=metrics)
    with ServerThread(create_app(state)) as server:
        yield server


def on_worker(url: str, wanted: int) -> httpx.Client:
    """A client (for `hybrid serve --workers N`) whose one keep-alive connection was accepted
    by worker `wanted`, as `/health` says; use it within uvicorn's 5 s keep-alive."""
    for _ in range(200):
        client = httpx.Client(base_url=url, limits=httpx.Limits(max_connections=1), timeout=120)
        if client.get("/health").json()["worker"] == wanted:
            return client
        client.close()
    raise AssertionError(f"no connection reached worker {wanted} in 200 tries")


def requests_counted(
    client: httpx.Client, model: str, route: str = "/v1/chat/completions"
) -> float:
    """`hybrid_requests_total` for `model` on `route` with status 200, from `/metrics`."""
    import re

    pattern = (
        rf'hybrid_requests_total\{{model="{re.escape(model)}",route="{re.escape(route)}",'
        rf'status="200"\}} (\S+)'
    )
    found = re.search(pattern, client.get("/metrics").text)
    return float(found.group(1)) if found else 0.0
