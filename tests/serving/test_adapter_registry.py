"""The adapter registry: versions, checks against the served base, atomic writes."""

from __future__ import annotations

import json
import shutil

import pytest

from serving.adapters import (
    AdapterNotFound,
    AdapterRegistry,
    AdapterRejected,
)
from tests.helpers.adapters import random_lora
from tests.helpers.tiny_llama import build_tiny_llama


def test_register_versions_and_promote(registry, lora):
    v1 = registry.register(lora, "acme-voice")
    v2 = registry.register(lora, "acme-voice", promote=False)
    assert (v1.version, v2.version) == ("v1", "v2")
    assert registry.resolve("acme-voice").adapter.version == "v1"
    assert registry.resolve("acme-voice@v2").adapter.engine_name == "acme-voice@v2"
    registry.promote("acme-voice", "v2")
    assert registry.resolve("acme-voice").adapter.version == "v2"
    served = registry.resolve("acme-voice").adapter.path
    assert served.is_relative_to(registry.root) and (served / "adapter_model.safetensors").is_file()


def test_reads_parse_the_index_once_and_see_other_writers_at_once(registry, lora, base):
    """Requests resolve their model on every lease: the index is parsed again only when the
    file changed, whoever changed it (another process: here another registry object)."""
    registry.register(lora, "voice")
    registry.register(lora, "voice", promote=False)
    parsed = []
    read = registry._index
    registry._index = lambda: parsed.append(1) or read()
    for _ in range(3):
        assert registry.resolve("voice").adapter.version == "v1"
        assert [v.version for v in registry.list()] == ["v1", "v2"]
    assert len(parsed) == 1
    other = AdapterRegistry(registry.root, base, max_rank=16)  # e.g. `hybrid adapter promote`
    other.promote("voice", "v2")
    assert registry.resolve("voice").adapter.version == "v2"
    assert registry.resolve("voice@v1").adapter.current is False
    other.remove("voice", "v1")
    with pytest.raises(AdapterNotFound, match=r"has no version 'v1' \(versions: v2\)"):
        registry.resolve("voice@v1")
    index = registry.root / "index.json"  # edited by hand, in place
    index.write_text(index.read_text().replace('"current": "v2"', '"current":null'))
    with pytest.raises(AdapterNotFound, match="has no current version yet"):
        registry.resolve("voice")
    assert len(parsed) == 4


def test_foreign_peft_folder_gets_a_manifest(registry, lora, base):
    registered = registry.register(lora, "external")
    assert registered.foreign
    manifest = json.loads((registered.path / "hybrid_adapter.json").read_text())
    assert manifest["base_model"]["fingerprint"] == base.fingerprint
    assert manifest["lora"]["rank"] == 8 and manifest["registered_as"] == "external@v1"


def test_unknown_names_list_what_exists(registry, lora):
    registry.register(lora, "brand-a")
    with pytest.raises(AdapterNotFound, match=r"unknown adapter 'brand-b' \(registered: brand-a\)"):
        registry.resolve("brand-b")
    with pytest.raises(AdapterNotFound, match=r"has no version 'v9' \(versions: v1\)"):
        registry.resolve("brand-a@v9")


def test_rank_above_engine_limit_is_refused(tmp_path, base, tiny_llama_dir):
    big = random_lora(tiny_llama_dir, tmp_path / "big", rank=32)
    registry = AdapterRegistry(tmp_path / "r", base, max_rank=16)
    with pytest.raises(AdapterRejected, match="LoRA rank 32 exceeds the engine's max rank 16"):
        registry.register(big, "big")
    assert registry.list() == []


def test_adapter_for_another_base_is_refused(tmp_path, base):
    other_base = build_tiny_llama(tmp_path / "other", hidden_size=192, intermediate_size=384)
    other = random_lora(other_base, tmp_path / "other-lora")
    registry = AdapterRegistry(tmp_path / "r", base, max_rank=16)
    with pytest.raises(AdapterRejected, match=r"does not fit the served base model .*shape"):
        registry.register(other, "wrong")


def test_manifest_fingerprint_mismatch_is_refused(tmp_path, registry, lora):
    copy = tmp_path / "copy"
    shutil.copytree(lora, copy)
    (copy / "hybrid_adapter.json").write_text(
        json.dumps(
            {
                "format": "hybrid-adapter/1",
                "base_model": {"id": "SomeOtherModel-7B", "fingerprint": "0" * 64},
            }
        )
    )
    with pytest.raises(AdapterRejected, match="trained on base model 'SomeOtherModel-7B'"):
        registry.register(copy, "mismatch")


@pytest.mark.parametrize("bad", ["pickle", "symlink", "missing", "modules_to_save", "junk_tensors"])
def test_unsafe_or_broken_folders_are_refused(tmp_path, registry, lora, bad):
    folder = tmp_path / "bad"
    shutil.copytree(lora, folder)
    if bad == "pickle":
        (folder / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
        expected = "pickle-based checkpoint"
    elif bad == "symlink":
        (folder / "adapter_model.safetensors").unlink()
        (folder / "adapter_model.safetensors").symlink_to("/etc/passwd")
        expected = "symbolic link"
    elif bad == "missing":
        (folder / "adapter_model.safetensors").unlink()
        expected = "missing adapter_model.safetensors"
    elif bad == "modules_to_save":
        config = json.loads((folder / "adapter_config.json").read_text())
        config["modules_to_save"] = ["lm_head"]
        (folder / "adapter_config.json").write_text(json.dumps(config))
        expected = "modules_to_save"
    else:
        (folder / "adapter_model.safetensors").write_bytes(
            b"\x10\x00\x00\x00\x00\x00\x00\x00garbage!"
        )
        expected = "not a readable safetensors file"
    with pytest.raises(AdapterRejected, match=expected):
        registry.register(folder, "bad")
    assert registry.list() == []
    assert not list(registry.root.glob(".staging-*"))


def test_bad_names_and_duplicates(registry, lora):
    with pytest.raises(AdapterRejected, match="invalid adapter name"):
        registry.register(lora, "../escape")
    with pytest.raises(AdapterRejected, match="invalid version"):
        registry.register(lora, "ok", version="../../v1")
    registry.register(lora, "ok", version="2025-q1")
    with pytest.raises(AdapterRejected, match="already registered"):
        registry.register(lora, "ok", version="2025-q1")


def test_remove_keeps_current_until_promoted_away(registry, lora):
    registry.register(lora, "voice")
    registry.register(lora, "voice")
    with pytest.raises(AdapterRejected, match="current version; promote another"):
        registry.remove("voice", "v2")
    registry.remove("voice", "v1")
    assert [v.version for v in registry.list()] == ["v2"]
    assert not (registry.root / "store" / "voice" / "v1").exists()
