"""`hybrid adapter scale`: a copy whose update to the base model is `factor` times the trained
one (checked with PEFT on a tiny model), nothing written on bad input."""

from __future__ import annotations

import json

import pytest
import torch

from finetune.errors import AdapterError
from finetune.scaling import scale_adapter


@pytest.fixture(scope="module")
def adapter(tiny_llama_dir, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, config)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # trained-looking: B is zero at initialisation
            torch.nn.init.normal_(param, std=0.02)
    folder = tmp_path_factory.mktemp("adapter") / "voice"
    peft_model.save_pretrained(folder)
    (folder / "hybrid_adapter.json").write_text(json.dumps({"lora": {"alpha": 8}}))
    return folder


def _logits(tiny_llama_dir, adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        plain = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter_dir)(ids).logits
    return plain, tuned


def test_the_scaled_copy_moves_the_model_factor_times_as_far(tiny_llama_dir, adapter, tmp_path):
    half = scale_adapter(adapter, tmp_path / "half", 0.5)
    config = json.loads((half / "adapter_config.json").read_text())
    assert config["lora_alpha"] == 4
    manifest = json.loads((half / "hybrid_adapter.json").read_text())
    assert manifest["scaled"]["factor"] == 0.5 and manifest["lora"]["alpha"] == 4
    assert (half / "adapter_model.safetensors").read_bytes() == (
        adapter / "adapter_model.safetensors"
    ).read_bytes()  # the weights are not rewritten
    base, full = _logits(tiny_llama_dir, adapter)
    _, scaled = _logits(tiny_llama_dir, half)
    assert (full - base).abs().max() > 1e-3  # the adapter does move the model
    # a small LoRA step is close to linear in its scale: half the strength, about half the shift
    ratio = (scaled - base).norm() / (full - base).norm()
    assert 0.4 < ratio < 0.6, ratio
    # scaling a scaled copy composes
    quarter = scale_adapter(half, tmp_path / "quarter", 0.5)
    assert json.loads((quarter / "hybrid_adapter.json").read_text())["scaled"]["factor"] == 0.25


def test_bad_input_writes_nothing(adapter, tmp_path):
    with pytest.raises(AdapterError, match="factor"):
        scale_adapter(adapter, tmp_path / "x", 0)
    with pytest.raises(AdapterError, match="factor"):
        scale_adapter(adapter, tmp_path / "x", 5)
    with pytest.raises(AdapterError, match="not a PEFT adapter"):
        scale_adapter(tmp_path, tmp_path / "x", 0.5)
    (tmp_path / "taken").mkdir()
    with pytest.raises(AdapterError, match="already exists"):
        scale_adapter(adapter, tmp_path / "taken", 0.5)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not valid JSON"):
        scale_adapter(broken, tmp_path / "x", 0.5)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_cli_scale(adapter, tmp_path):
    from typer.testing import CliRunner

    from hybrid.cli import app

    out = tmp_path / "s"
    result = CliRunner().invoke(
        app, ["adapter", "scale", str(adapter), "--factor", "0.75", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "scaled x0.75" in result.output
    assert json.loads((out / "adapter_config.json").read_text())["lora_alpha"] == 6
