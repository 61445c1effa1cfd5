"""LoRA training on a tiny model: held-out loss drops, the folder is complete and vLLM-shaped,
an interrupted run leaves nothing in the output folder and resumes from its checkpoint."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from finetune.config import LoraSettings
from finetune.errors import TrainingError, TrainingInterrupted
from finetune.manifest import base_fingerprint, read_manifest
from finetune.training import last_checkpoint, split_examples, train
from tests.helpers.training import style_examples, tiny_train_config, write_chats


def held_out_loss(model_dir, adapter_dir, examples) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.encoding import Collator, encode_examples

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    encoded, _ = encode_examples(examples, tokenizer, 96)
    batch = Collator(tokenizer.pad_token_id)(encoded)
    with torch.no_grad():
        return float(model(**batch).loss)


def test_training_lowers_held_out_loss_and_writes_a_complete_adapter(tiny_llama_dir, tmp_path):
    examples = style_examples()
    out = tmp_path / "ceo-voice"
    result = train(tiny_train_config(tiny_llama_dir, out), examples=examples, progress=False)
    assert result.adapter_dir == out
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "hybrid_adapter.json",
        "metrics.json",
        "loss_curve.png",
    } <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    assert not (tmp_path / ".ceo-voice.checkpoints").exists()

    _, held_out = split_examples(examples, 0.25, 7)
    before = held_out_loss(tiny_llama_dir, None, held_out)
    after = held_out_loss(tiny_llama_dir, out, held_out)
    assert after < 0.8 * before, (before, after)  # measured: 6.24 -> 4.36
    assert result.metrics["validation_loss"] == pytest.approx(after, rel=0.05)

    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 16
    assert sorted(adapter_config["target_modules"]) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]
    assert not adapter_config.get("modules_to_save")
    with safe_open(out / "adapter_model.safetensors", "pt") as fh:
        keys = list(fh.keys())
    assert keys and all("lora_A" in k or "lora_B" in k for k in keys)

    manifest = read_manifest(out)
    assert manifest["base_model"]["fingerprint"] == base_fingerprint(tiny_llama_dir)
    assert manifest["lora"]["rank"] == 8
    assert manifest["data"]["examples"] == len(examples)
    assert manifest["metrics"]["validation_loss"] == result.metrics["validation_loss"]
    assert {"torch", "transformers", "peft"} <= set(manifest["versions"])
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert any("loss" in h for h in history) and any("eval_loss" in h for h in history)


def test_same_seed_same_adapter(tiny_llama_dir, tmp_path):
    examples = style_examples(16)
    a = train(
        tiny_train_config(tiny_llama_dir, tmp_path / "a", epochs=1),
        examples=examples,
        progress=False,
    )
    b = train(
        tiny_train_config(tiny_llama_dir, tmp_path / "b", epochs=1),
        examples=examples,
        progress=False,
    )
    assert a.metrics["train_loss"] == b.metrics["train_loss"]


def test_gradient_accumulation_sets_the_steps_and_the_bar_shows_live_loss(
    tiny_llama_dir, tmp_path, capsys
):
    # 24 examples, batch 4 x accumulation 3 = 12 per optimizer step: 2 steps an epoch
    cfg = tiny_train_config(
        tiny_llama_dir,
        tmp_path / "acc",
        epochs=2,
        batch_size=4,
        gradient_accumulation=3,
        validation_share=0,
        logging_steps=1,
    )
    result = train(cfg, examples=style_examples(24), progress=True)
    assert result.metrics["steps"] == 4 and result.metrics["epochs"] == 2
    assert (result.metrics["steps_run"], result.metrics["resumed_from_step"]) == (4, 0)
    bar = capsys.readouterr().err
    assert "train: 100%" in bar and "4/4" in bar and "loss=" in bar and "lr=" in bar


def test_failure_mid_training_leaves_nothing_and_says_why(tiny_llama_dir, tmp_path, monkeypatch):
    from finetune import training

    def broken_plot(*args, **kwargs):  # fails after the adapter files were written to .partial
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training, "plot_loss_curve", broken_plot)
    out = tmp_path / "adapter"
    with pytest.raises(TrainingError) as info:
        train(
            tiny_train_config(tiny_llama_dir, out, epochs=1),
            examples=style_examples(12),
            progress=False,
        )
    assert str(info.value).startswith(
        "training failed (OSError: [Errno 28] No space left on device); nothing was written to "
    )
    assert not out.exists() and not (tmp_path / "adapter.partial").exists()


def test_base_model_is_a_folder_or_a_hub_id_in_the_local_cache(
    tiny_llama_dir, tmp_path, monkeypatch
):
    import shutil

    import huggingface_hub.constants

    from finetune.base_models import resolve_base_model
    from finetune.errors import BaseModelError

    assert resolve_base_model(str(tiny_llama_dir)) == tiny_llama_dir
    # the layout `huggingface-cli download` leaves in the hub cache
    repo = tmp_path / "hub" / "models--acme--tiny-chat"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_llama_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_base_model("acme/tiny-chat") == snapshot

    with pytest.raises(BaseModelError) as info:
        resolve_base_model("acme/not-downloaded")
    assert str(info.value) == (
        "base model 'acme/not-downloaded' is neither a local folder, a packaged model "
        "(SmolLM2-135M-Instruct, gemma-3-270m) nor in the local Hugging Face cache; download it "
        "first (huggingface-cli download acme/not-downloaded) or use 'SmolLM2-135M-Instruct'"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseModelError, match=r"base model folder .*empty has no config.json"):
        resolve_base_model(str(tmp_path / "empty"))


def test_interrupted_training_leaves_no_output_and_resumes(tiny_llama_dir, tmp_path, monkeypatch):
    from finetune import progress

    examples = style_examples()
    out = tmp_path / "adapter"
    original = progress.LiveLossBar.on_step_end

    def interrupt_at_step_5(self, args, state, control, **kw):
        if state.global_step == 5:
            raise KeyboardInterrupt
        return original(self, args, state, control, **kw)

    monkeypatch.setattr(progress.LiveLossBar, "on_step_end", interrupt_at_step_5)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_train_config(tiny_llama_dir, out, epochs=3), examples=examples, progress=False)
    message = str(info.value)
    assert "interrupted" in message and "--resume" in message
    assert not out.exists() and not (tmp_path / "adapter.partial").exists()
    assert (tmp_path / ".adapter.checkpoints" / "checkpoint-4").is_dir()
    # a run killed while saving leaves a checkpoint without trainer_state.json: skipped
    half_saved = tmp_path / ".adapter.checkpoints" / "checkpoint-8"
    half_saved.mkdir()
    (half_saved / "adapter_model.safetensors").write_bytes(b"")
    assert last_checkpoint(tmp_path / ".adapter.checkpoints").name == "checkpoint-4"

    monkeypatch.setattr(progress.LiveLossBar, "on_step_end", original)
    resumed = train(
        tiny_train_config(tiny_llama_dir, out, epochs=3),
        examples=examples,
        progress=False,
        resume=True,
    )
    assert out.is_dir() and resumed.metrics["steps"] > 5
    # the total counts the steps before the interruption; steps_run only this process's
    assert resumed.metrics["resumed_from_step"] == 4
    assert resumed.metrics["steps_run"] == resumed.metrics["steps"] - 4


def test_existing_output_is_not_overwritten_by_default(tiny_llama_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(
        TrainingError, match="already exists; choose another output_dir or pass --overwrite"
    ):
        train(tiny_train_config(tiny_llama_dir, out), examples=style_examples(12), progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_modules_to_save_is_allowed_with_a_warning(tiny_llama_dir, tmp_path, caplog):
    cfg = tiny_train_config(
        tiny_llama_dir, tmp_path / "mts", epochs=1, lora=LoraSettings(modules_to_save=("lm_head",))
    )
    train(cfg, examples=style_examples(12), progress=False)
    assert "vLLM may refuse" in caplog.text


def _wait_for(condition, proc, timeout_s: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} after {timeout_s}s")
        time.sleep(0.05)


@pytest.mark.slow
def test_real_sigint_and_sigkill_leave_no_output_and_resume_finishes(tiny_llama_dir, tmp_path):
    """`hybrid train` in a child process, interrupted for real: Ctrl-C (SIGINT) mid-run, then
    SIGKILL of the resumed run; the output folder never appears until a run finishes."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    write_chats(tmp_path / "style.jsonl", style_examples())
    (tmp_path / "train.yaml").write_text(
        f"base_model: {tiny_llama_dir}\ndata: [style.jsonl]\noutput_dir: adapters/voice\n"
        "max_steps: 60\nbatch_size: 8\ngradient_accumulation: 1\nlearning_rate: 0.01\n"
        "max_length: 96\nvalidation_share: 0\nlogging_steps: 3\nsave_steps: 3\n"
    )
    out = tmp_path / "adapters" / "voice"
    checkpoints = tmp_path / "adapters" / ".voice.checkpoints"
    hybrid = [str(Path(sys.executable).parent / "hybrid"), "train", str(tmp_path / "train.yaml")]
    # one torch thread: on a busy 2-core machine spinning OpenMP threads slow steps 40-fold
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def saved_after(step: int):
        def check() -> bool:
            found = last_checkpoint(checkpoints) if checkpoints.is_dir() else None
            return found is not None and int(found.name.rsplit("-", 1)[-1]) > step

        return check

    def leftovers() -> list[str]:
        return sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".voice."))

    # A shell's background job inherits SIGINT ignored, and Python then leaves it ignored: give
    # the child the default, as a terminal would.
    first = subprocess.Popen(
        [*hybrid, "-q"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for(saved_after(0), first, 180, "checkpoint")
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: training interrupted; nothing was written to ")
    assert line.endswith(f"; checkpoints kept in {checkpoints}, continue with --resume")
    assert leftovers() == []
    interrupted_at = int(last_checkpoint(checkpoints).name.rsplit("-", 1)[-1])

    second = subprocess.Popen(
        [*hybrid, "-q", "--resume"], stderr=subprocess.PIPE, text=True, env=env
    )
    _wait_for(saved_after(interrupted_at), second, 180, "checkpoint after resuming")
    second.kill()  # no handler runs: only the write-then-rename keeps the output clean
    second.communicate(timeout=60)
    assert leftovers() == []

    done = subprocess.run(
        [*hybrid, "-q", "--resume"], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    resumed = int(done.stdout.split(" steps run after resuming at step ")[1].split(",")[0])
    assert f"adapter written to {out} ({60 - resumed} steps run after resuming at step " in (
        done.stdout
    )
    assert f"at step {resumed}, 60 in all" in done.stdout and 0 < resumed < 60
    assert leftovers() == ["voice"] and not checkpoints.exists()
    assert json.loads((out / "metrics.json").read_text())["final"]["steps"] == 60
