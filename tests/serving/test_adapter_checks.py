"""What the registry reads inside an adapter folder: weight values, file completeness, size,
unsupported options and malformed JSON, each refused with one line naming the file and field."""

from __future__ import annotations

import json
import re
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from serving.adapters import AdapterNotFound, AdapterRegistry, AdapterRejected
from serving.adapters.weights import check_values, default_max_bytes

torch.set_num_threads(1)


def copy_with_weights(lora, folder, change) -> object:
    shutil.copytree(lora, folder)
    weights = folder / "adapter_model.safetensors"
    tensors = load_file(weights)
    change(tensors)
    save_file(tensors, weights)
    return folder


def first_key(tensors: dict) -> str:
    return sorted(tensors)[0]


def refused(registry, folder, pattern: str) -> str:
    with pytest.raises(AdapterRejected) as info:
        registry.register(folder, "bad")
    message = str(info.value)
    assert re.search(pattern, message), message
    assert "\n" not in message
    assert registry.list() == []
    assert not list(registry.root.glob(".staging-*"))
    assert not (registry.root / "store" / "bad").exists()
    return message


def set_value(value: float, dtype=torch.float32):
    def change(tensors):
        key = first_key(tensors)
        tensor = tensors[key].clone()
        tensor.view(-1)[3] = value
        tensors[key] = tensor.to(dtype)

    return change


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        (float("nan"), torch.float32, r"1 non-finite value\(s\) \(NaN\)"),
        (float("inf"), torch.float32, r"non-finite value\(s\) \(\+inf\)"),
        (float("-inf"), torch.float16, r"non-finite value\(s\) \(-inf\)"),
        (float("nan"), torch.bfloat16, r"non-finite value\(s\) \(NaN\)"),
        (1e30, torch.float32, r"magnitude 1e\+30, beyond the 100"),
        (500.0, torch.bfloat16, r"magnitude 500, beyond the 100"),
    ],
)
def test_non_finite_or_huge_weights_are_refused(tmp_path, registry, lora, value, dtype, expected):
    folder = copy_with_weights(lora, tmp_path / "bad", set_value(value, dtype))
    message = refused(registry, folder, expected)
    assert "adapter_model.safetensors: tensor base_model.model." in message


def test_trained_looking_weights_pass_with_their_peak_measured(lora):
    stats = check_values(lora / "adapter_model.safetensors")
    assert stats.tensors == 16 and 0 < stats.max_abs < 100


@pytest.mark.parametrize("cut", ["truncated", "padded"])
def test_weights_file_must_match_its_header(tmp_path, registry, lora, cut):
    folder = tmp_path / "bad"
    shutil.copytree(lora, folder)
    weights = folder / "adapter_model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[:-100] if cut == "truncated" else raw + b"\0" * 64)
    refused(registry, folder, r"not a readable safetensors file .*not fully covered")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("use_dora", True, "use_dora: true \\(DoRA\\) is not supported"),
        ("lora_bias", True, "LoRA bias"),
        ("bias", "all", "LoRA bias"),
        ("init_lora_weights", "pissa", "init_lora_weights='pissa' changes the base weights"),
        ("rank_pattern", {"q_proj": 4}, "per-module ranks"),
        ("layer_replication", [[0, 1]], "layer_replication"),
        ("peft_type", "IA3", "only LoRA adapters are served"),
        ("lora_alpha", 1e9, "scales the LoRA by 1.25e\\+08"),
    ],
)
def test_unsupported_options_are_refused_with_the_option(
    tmp_path, registry, lora, option, value, expected
):
    folder = tmp_path / "bad"
    shutil.copytree(lora, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config[option] = value
    (folder / "adapter_config.json").write_text(json.dumps(config))
    message = refused(registry, folder, expected)
    assert "adapter_config.json" in message


@pytest.mark.parametrize(
    ("file", "edit", "expected"),
    [
        ("adapter_config.json", {"r": "abc"}, r"adapter_config.json: field 'r': .*\(got \"abc\"\)"),
        ("adapter_config.json", {"r": 8.5}, r"field 'r': "),
        ("adapter_config.json", {"lora_alpha": "big"}, r"field 'lora_alpha'"),
        ("adapter_config.json", {"lora_alpha": True}, r"field 'lora_alpha'"),
        (
            "adapter_config.json",
            {"target_modules": ["q_proj", 3]},
            r"field 'target_modules': must be list\[str\] \| str \| null \(got \[\"q_proj\", 3\]\)",
        ),
        ("adapter_config.json", {"use_dora": "yes"}, r"field 'use_dora'"),
        ("adapter_config.json", [1, 2], r"adapter_config.json: must be a JSON object, got list"),
        ("hybrid_adapter.json", [1], r"hybrid_adapter.json: must be a JSON object, got list"),
        ("hybrid_adapter.json", {"format": 3}, r"hybrid_adapter.json: field 'format'"),
        (
            "hybrid_adapter.json",
            {"format": "hybrid-adapter/1", "base_model": "x"},
            r"hybrid_adapter.json: field 'base_model'",
        ),
    ],
)
def test_malformed_json_files_are_refused_naming_file_and_field(
    tmp_path, registry, lora, file, edit, expected
):
    folder = tmp_path / "bad"
    shutil.copytree(lora, folder)
    path = folder / file
    if isinstance(edit, dict) and path.exists():
        data = {**json.loads(path.read_text()), **edit}
    else:
        data = edit
    path.write_text(json.dumps(data))
    refused(registry, folder, expected)


def write_safetensors(path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"x.lora_A.weight": 5}, r"not a readable safetensors file"),
        ({"x.lora_A.weight": [1, 2]}, r"not a readable safetensors file"),
        (
            {"x.lora_A.weight": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}},
            r"does not fit the served base model \(x.lora_A.weight: the base model has no linear",
        ),
    ],
)
def test_bad_header_entries_are_refused(tmp_path, registry, lora, header, expected):
    folder = tmp_path / "bad"
    shutil.copytree(lora, folder)
    write_safetensors(folder / "adapter_model.safetensors", header, b"\0" * 8)
    refused(registry, folder, expected)


def test_integer_tensors_are_refused_by_dtype(tmp_path, lora):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(4, dtype=torch.int32)}, path)
    with pytest.raises(AdapterRejected, match="tensor a has dtype I32; LoRA weights must be F16"):
        check_values(path)


def test_size_bound_from_the_base_shapes(base):
    # tiny model: every 2-D weight (out, in) at rank 16 in fp32, twice, plus 16 MiB of room
    expected = sum(16 * (s[0] + s[1]) for s in base.shapes.values() if len(s) == 2) * 4 * 2
    assert default_max_bytes(base.shapes, 16) == expected + 16 * 2**20


def test_oversized_sparse_weights_are_refused_before_copying(tmp_path, registry, lora, monkeypatch):
    folder = tmp_path / "bad"
    shutil.copytree(lora, folder)
    with open(folder / "adapter_model.safetensors", "r+b") as fh:
        fh.truncate(2 * 2**30)  # sparse: 2 GiB long, a few KiB on disk
    copies: list = []
    real_copy = shutil.copy2
    monkeypatch.setattr(shutil, "copy2", lambda *a, **k: copies.append(a) or real_copy(*a, **k))
    message = refused(registry, folder, r"2048.0 MiB is larger than the .* MiB an adapter")
    assert copies == []
    assert "adapter_model.safetensors: 2048.0 MiB" in message
    small = AdapterRegistry(tmp_path / "small", registry.base, 16, max_bytes=1024)
    with pytest.raises(AdapterRejected, match=r"larger than the 0\.0 MiB"):
        small.register(lora, "ok")


@pytest.mark.parametrize("name", ["nl\n", "voice\n", "a\n", "ok\r", " ok"])
def test_names_with_trailing_newline_are_refused(registry, lora, name):
    with pytest.raises(AdapterRejected, match="invalid adapter name"):
        registry.register(lora, name)
    with pytest.raises(AdapterRejected, match="invalid version"):
        registry.register(lora, "ok", version="v1\n")
    assert registry.list() == [] and not list((registry.root / "store").iterdir())


def test_pending_first_version_is_not_current_until_promoted(registry, lora):
    pending = registry.register(lora, "fresh", pending=True, promote=False)
    assert not pending.current
    with pytest.raises(AdapterNotFound, match="'fresh' has no current version yet"):
        registry.resolve("fresh")
    assert registry.resolve("fresh@v1").adapter.version == "v1"
    registry.promote("fresh", "v1")
    assert registry.resolve("fresh").adapter.current
