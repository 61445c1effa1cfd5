"""Relative paths in hybrid.yaml become absolute when the config is read: the registry's folders
are sent to engines, and a remote vLLM resolves a relative path from its own working directory
(every load failed). The real-engine check is in tests/serving/test_serve_cli_vllm.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from hybrid.config import load_config
from hybrid.runtime import build_runtime


def test_relative_paths_of_a_relatively_named_config_become_absolute(tmp_path, monkeypatch):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "hybrid.yaml").write_text(
        yaml.safe_dump(
            {
                "remote_engines": {"urls": ["http://127.0.0.1:9"]},
                "base_model": "models/base",
                "adapters": {"registry": "registry"},
                "store": {"mode": "embedded", "path": "data/chroma"},
                "apps": ["apps"],
                "gateway": {"lease_dir": "shared/leases"},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("proj/hybrid.yaml"))
    project = tmp_path / "proj"
    assert config.adapters.registry == project / "registry"
    assert config.base_model == project / "models" / "base"
    assert config.store.path == project / "data" / "chroma"
    assert config.apps == (project / "apps",)
    assert config.gateway.lease_dir == project / "shared" / "leases"


def test_without_a_config_file_the_default_registry_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.adapters.registry == tmp_path / ".hybrid" / "adapters"
    assert config.adapters.registry.is_absolute()


def test_the_runtime_gets_an_absolute_registry(tmp_path, monkeypatch, tiny_llama_dir):
    (tmp_path / "hybrid.yaml").write_text(
        yaml.safe_dump(
            {
                "remote_engines": {"urls": ["http://127.0.0.1:9"]},
                "base_model": str(tiny_llama_dir),
                "adapters": {"registry": "reg"},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    runtime = build_runtime(load_config(Path("hybrid.yaml")))
    assert runtime.registry_root == tmp_path / "reg"
    assert runtime.registry().root.is_absolute()
