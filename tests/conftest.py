"""Shared fixtures. Tiers: fast by default; `slow`, `server`, `vllm` marked (make test runs all)."""

from __future__ import annotations

import os

# Never reach a model hub from tests; everything must come from local folders and packages.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["ANONYMIZED_TELEMETRY"] = "False"

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http_ok(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


class ChromaServer:
    """A real `chroma run` server on loopback, in its own data directory."""

    def __init__(self, data_dir: Path, log_path: Path):
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> ChromaServer:
        chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                chroma,
                "run",
                "--path",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http_ok(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", 60, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """One real Chroma server for the test session (tests use distinct collection names)."""
    root = tmp_path_factory.mktemp("chroma-server")
    server = ChromaServer(root / "data", root / "chroma.log").start()
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def catalog(data_dir):
    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog

    return KnowledgeBaseCatalog(EmbeddedStoreConfig(path=data_dir))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from tests.helpers.tiny_llama import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(scope="session")
def lora_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """A random (non-zero) rank-8 PEFT LoRA on q/k/v/o of the tiny model."""
    from tests.helpers.adapters import random_lora

    return random_lora(tiny_llama_dir, tmp_path_factory.mktemp("lora") / "style", rank=8)


@pytest.fixture(scope="session")
def vllm_engine(tiny_llama_dir, tmp_path_factory):
    """One supervised vLLM server on the tiny model for the whole test session (a start costs
    ~60 s on a 2-core CPU), started only when a `vllm`-marked test asks for it. Tests that stop
    or kill it are marked `engine_teardown` and run last (see pytest_collection_modifyitems)."""
    from serving.engine import EngineConfig, EngineProcess, RestartPolicy

    config = EngineConfig(
        model=str(tiny_llama_dir),
        served_model_name="tiny-llama",
        max_loras=2,
        max_lora_rank=8,
        max_cpu_loras=4,
        max_model_len=1024,
        dtype="float32",
        kv_cache_gib=1,
        log_file=tmp_path_factory.mktemp("vllm") / "vllm.log",
        startup_timeout_s=400,
        watch_interval_s=0.5,
        restart=RestartPolicy(max_restarts=2, backoff_s=0.5),
    )
    engine = EngineProcess(config)
    engine.start()
    print(f"\nvLLM ready after {engine.last_ready_s:.1f} s (log: {engine.log_path})")
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def clean_vllm_engine(vllm_engine):
    """The shared vLLM server as a module finds it best: no adapter another module left loaded
    (or remembered for a restart). Modules that compare answers use it (`usefixtures`)."""
    from tests.helpers.engine import served_adapters, unload_adapter

    if vllm_engine.state == "restarting":  # a kill test of another module just ran
        vllm_engine.wait_ready(400)
    vllm_engine.on_launch.clear()  # engine sets of earlier modules reload nothing after a kill
    if vllm_engine.state == "ready":
        for name in served_adapters(vllm_engine):
            unload_adapter(vllm_engine, name)
    return vllm_engine


def pytest_collection_modifyitems(config, items):
    """Tests that kill or stop the shared vLLM server run after every other test, ordered by
    the marker's `order` (kills before the final stop)."""

    def teardown_order(item) -> int:
        marker = item.get_closest_marker("engine_teardown")
        return 0 if marker is None else int(marker.kwargs.get("order", 1))

    items.sort(key=teardown_order)


def pytest_runtest_logreport(report):
    """Outcome of each `reliability` test for the README table (only when `make bench` asks)."""
    if "reliability" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        from tests.helpers.reliability import record_outcome

        record_outcome(report.nodeid, report.outcome, report.duration)
