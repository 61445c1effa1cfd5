"""finetune/ writes adapters, serving/ checks them: both implement the `hybrid-base/1` base
fingerprint of docs/adapter-format.md and must agree, or trained adapters would be refused."""

from __future__ import annotations

import json
import shutil

from finetune.manifest import MANIFEST_FORMAT, base_fingerprint
from serving.adapters import describe_base
from serving.adapters.checks import MANIFEST_FORMAT as SERVING_MANIFEST_FORMAT
from tests.helpers.tiny_llama import build_tiny_llama


def test_both_fingerprints_agree_and_tell_models_apart(tiny_llama_dir, tmp_path):
    assert MANIFEST_FORMAT == SERVING_MANIFEST_FORMAT
    assert base_fingerprint(tiny_llama_dir) == describe_base(tiny_llama_dir).fingerprint

    other = build_tiny_llama(tmp_path / "other", num_layers=3)
    assert base_fingerprint(other) == describe_base(other).fingerprint
    assert base_fingerprint(other) != base_fingerprint(tiny_llama_dir)

    # same weights, another chat template: a different base for serving purposes
    retemplated = tmp_path / "retemplated"
    shutil.copytree(tiny_llama_dir, retemplated)
    (retemplated / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert base_fingerprint(retemplated) == describe_base(retemplated).fingerprint
    assert base_fingerprint(retemplated) != base_fingerprint(tiny_llama_dir)


def test_fingerprint_ignores_dtype(tiny_llama_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    half = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16).save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(half)
    config = json.loads((half / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    assert base_fingerprint(half) == base_fingerprint(tiny_llama_dir)
