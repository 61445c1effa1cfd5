"""Fixtures of the adapter-registry tests: the tiny model as a served base, a random LoRA for
it, an empty registry (a module that defines its own `registry` uses that one), and a registry
holding two versions of `voice`."""

from __future__ import annotations

import pytest

from serving.adapters import AdapterRegistry, describe_base
from tests.helpers.adapters import random_lora


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return describe_base(tiny_llama_dir)


@pytest.fixture(scope="module")
def lora(tiny_llama_dir, tmp_path_factory):
    return random_lora(tiny_llama_dir, tmp_path_factory.mktemp("lora") / "a")


@pytest.fixture
def registry(tmp_path, base):
    return AdapterRegistry(tmp_path / "registry", base, max_rank=16)


@pytest.fixture(scope="module")
def adapter_dirs(tiny_llama_dir, tmp_path_factory):
    """Two random LoRAs of the tiny model, `a` and `b`."""
    root = tmp_path_factory.mktemp("adapters")
    return {n: random_lora(tiny_llama_dir, root / n, seed=s) for n, s in (("a", 1), ("b", 2))}


@pytest.fixture
def voice_registry(tmp_path, base, adapter_dirs):
    """`voice` v1 (current, adapter a) and v2 (registered, not promoted, adapter b)."""
    registry = AdapterRegistry(tmp_path / "registry", base, max_rank=16)
    registry.register(adapter_dirs["a"], "voice", "v1")
    registry.register(adapter_dirs["b"], "voice", "v2", promote=False)
    return registry
