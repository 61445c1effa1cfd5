"""Fixtures of the adapter-registry tests: the tiny model as a served base, a random LoRA for
it, and an empty registry (a module that defines its own `registry` uses that one)."""

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
