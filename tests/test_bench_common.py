"""bench/common.py's work folder: a bench serves an example's apps apart from the example."""

from __future__ import annotations

import os

import pytest
import yaml

from bench.common import isolated_work_folder


def test_isolated_work_folder_has_its_own_registry_log_store_and_model(tmp_path):
    example = tmp_path / "example"
    (example / "chroma").mkdir(parents=True)
    (example / "chroma" / "chroma.sqlite3").write_text("kb")
    (example / "hybrid.yaml").write_text(
        yaml.safe_dump(
            {
                "store": {"path": str(example / "chroma")},
                "adapters": {"registry": str(example / "registry")},
                "engine": {"model": "smollm2-135m", "log_file": str(example / "vllm.log")},
                "apps": ["apps/ceo.yaml"],
            }
        )
    )
    folder = tmp_path / "run"
    (folder / "registry" / "store").mkdir(parents=True)  # left by an earlier run

    work = isolated_work_folder(folder, example, threads=3, own_store=True, engine_model="qwen")

    config = yaml.safe_load((folder / "hybrid.yaml").read_text())
    assert config == {
        "store": {"path": str(folder / "chroma")},
        "adapters": {"registry": str(folder / "registry")},
        "engine": {"model": "qwen", "log_file": str(folder / "logs" / "vllm.log")},
        "apps": ["apps/ceo.yaml"],
    }
    assert (folder / "chroma" / "chroma.sqlite3").read_text() == "kb"
    assert not (folder / "registry").exists() and (folder / "logs").is_dir()
    assert (work.env["HF_HUB_OFFLINE"], work.env["OMP_NUM_THREADS"]) == ("1", "3")

    (folder / "chroma" / "chroma.sqlite3").write_text("written by the run")
    again = isolated_work_folder(folder, example, own_store=True)  # the copy is made once
    assert (folder / "chroma" / "chroma.sqlite3").read_text() == "written by the run"
    assert again.env.get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")  # not set
    assert yaml.safe_load((folder / "hybrid.yaml").read_text())["engine"]["model"] == "smollm2-135m"


def test_gateway_serves_a_config_for_the_block_and_stops_it(tmp_path, tiny_llama_dir):
    """bench/common.gateway over examples/runner.served: `hybrid serve` on a free port (here
    against a fake remote engine), ready when the block starts, gone when it ends."""
    import httpx

    from bench.common import gateway
    from tests.helpers.gateway import ServerThread
    from tests.serving.fake_engine import FakeEngine

    engine = FakeEngine(base="tiny")
    with ServerThread(engine.app) as fake:
        config = tmp_path / "hybrid.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "base_model": str(tiny_llama_dir),
                    "remote_engines": {"urls": [fake.url]},
                    "store": {"mode": "embedded", "path": str(tmp_path / "chroma")},
                    "adapters": {"registry": str(tmp_path / "registry")},
                }
            )
        )
        log = tmp_path / "logs" / "serve.log"
        with gateway(config, None, log) as (url, ready_s):
            assert ready_s is not None and ready_s > 0
            models = httpx.get(url + "/v1/models", timeout=30).json()["data"]
            assert [m["id"] for m in models] == ["tiny"]
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/ready", timeout=5)
        with gateway(None, "http://given:1", log) as (given, no_wait):
            assert (given, no_wait) == ("http://given:1", None)
