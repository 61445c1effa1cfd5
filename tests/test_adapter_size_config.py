"""`adapters.max_adapter_mib` reaches both registries (offline CLI and `hybrid serve`)."""

from __future__ import annotations

import shutil

import pytest

from hybrid.config import HybridConfig
from hybrid.runtime import build_runtime, offline_registry
from serving.adapters import AdapterRejected
from serving.adapters.weights import default_max_bytes
from tests.helpers.adapters import random_lora


def config(tmp_path, tiny_llama_dir, **adapters) -> HybridConfig:
    return HybridConfig.model_validate(
        {
            "base_model": str(tiny_llama_dir),
            "remote_engines": {"urls": ["http://127.0.0.1:9"]},
            "adapters": {"registry": str(tmp_path / "registry"), **adapters},
        }
    )


def test_configured_bound_refuses_larger_adapters_in_both_registries(tmp_path, tiny_llama_dir):
    cfg = config(tmp_path, tiny_llama_dir, max_adapter_mib=1)
    offline = offline_registry(cfg)
    served = build_runtime(cfg).registry()
    assert offline.max_bytes == served.max_bytes == 2**20
    folder = shutil.copytree(random_lora(tiny_llama_dir, tmp_path / "lora"), tmp_path / "big")
    with open(folder / "adapter_model.safetensors", "r+b") as fh:
        fh.truncate(2 * 2**20)
    for registry in (offline, served):
        with pytest.raises(AdapterRejected, match=r"2.0 MiB is larger than the 1.0 MiB"):
            registry.register(folder, "big")


def test_default_bound_comes_from_the_base_shapes(tmp_path, tiny_llama_dir):
    registry = offline_registry(config(tmp_path, tiny_llama_dir))
    assert registry.max_bytes == default_max_bytes(registry.base.shapes, 512)
