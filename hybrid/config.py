"""The one place that knows the shape of Hybrid's YAML config.

Example `hybrid.yaml` (every section is optional)::

    store:                     # where knowledge bases live
      mode: embedded           # or: server (a `chroma run` server)
      path: .hybrid/chroma
    knowledge_base_defaults:   # settings for knowledge bases created without options
      chunking: {chunk_size: 64, chunk_overlap: 16}
      embedder: {model: all-MiniLM-L6-v2}
    engine:                    # a vLLM server that `hybrid serve` starts and supervises
      model: SmolLM2-135M-Instruct   # a folder, or the embedded default's name
      max_loras: 4
      max_lora_rank: 16
    remote_engines:            # ... and/or vLLM servers that run already
      urls: [http://10.0.0.5:8000]
    merged_engines:            # an adapter version merged into the base, on its own server
      - {adapter: support-voice, version: v3}   # no url: `hybrid serve` merges and starts it
      - {adapter: sales-voice, version: v2, url: http://10.0.0.7:8001}   # runs already
    adapters:
      registry: .hybrid/adapters
      preload: [support-voice]
    gateway: {host: 127.0.0.1, port: 8080}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from finetune.config import EvalConfig, TrainConfig
from hybrid.config_files import (
    Frozen,
    as_lists,
    format_validation_error,
    read_yaml_mapping,
    validate,
    with_paths_resolved,
)
from hybrid.errors import ConfigError
from retrieval import EmbeddedStoreConfig, KnowledgeBaseSettings, StoreConfig
from serving.engine import EngineConfig, MergedEngineConfig, RemoteEngineConfig
from serving.gateway import GatewayConfig

DEFAULT_CONFIG_FILE = Path("hybrid.yaml")

__all__ = [
    "AdapterSettings",
    "ContextTraining",
    "EvalConfig",
    "GatewayConfig",
    "HybridConfig",
    "TrainConfig",
    "format_validation_error",
    "load_config",
    "load_context_training",
    "load_eval_config",
    "load_train_config",
    "with_data_dir",
]

# The fields of each config that are paths (the rule: hybrid/config_files.py).
HYBRID_PATHS = ("adapters.registry", "base_model", "apps", "engine.log_file", "gateway.lease_dir")
TRAIN_PATHS = ("data", "output_dir", "replay.paths")
EVAL_PATHS = ("adapter", "output_dir", "data", "general", "prompts")
CONTEXT_PATHS = ("app", "holdout")


class AdapterSettings(Frozen):
    """Where versioned adapters live, and which are loaded when the server starts."""

    registry: Path = Path(".hybrid/adapters")
    """Folder of the adapter registry (index.json + checked copies of each version)."""
    preload: tuple[str, ...] = ()
    """Adapters (`name` or `name@version`) loaded at start instead of on first use."""
    max_adapter_mib: Annotated[int, Field(ge=1)] | None = None
    """Largest adapter folder accepted, in MiB; default: a LoRA of the engine's max rank on every
    linear layer of the base model in fp32, twice, plus 16 MiB (docs/adapter-format.md)."""


class HybridConfig(Frozen):
    """Top-level config. Sub-configs belong to the layer that consumes them."""

    store: StoreConfig = Field(default_factory=EmbeddedStoreConfig)
    """Vector store holding the knowledge bases (embedded Chroma or a Chroma server)."""
    knowledge_base_defaults: KnowledgeBaseSettings = KnowledgeBaseSettings()
    """Chunking and embedder used by `hybrid kb create` unless options say otherwise."""
    engine: EngineConfig | None = None
    """A vLLM server `hybrid serve` starts and supervises (default when neither this nor
    remote_engines is set: the embedded SmolLM2-135M-Instruct)."""
    remote_engines: RemoteEngineConfig | None = None
    """vLLM servers that run already; `hybrid serve` attaches to them."""
    merged_engines: tuple[MergedEngineConfig, ...] = ()
    """vLLM servers that each serve one adapter version merged into the base model: that
    version's requests go there while it is current and the server is healthy, else to the
    LoRA path. An entry with `url` names a server that runs already (`hybrid adapter merge`);
    one without is merged (once, cached in the registry folder) and started by `hybrid serve`
    with the engine's settings (docs/serving.md, "Merged fast path")."""
    base_model: Path | None = None
    """Folder of the base model the engines serve, for adapter checks; default engine.model.
    Required with remote_engines alone."""
    adapters: AdapterSettings = AdapterSettings()
    """The adapter registry and what is loaded at start."""
    gateway: GatewayConfig = GatewayConfig()
    """The OpenAI-compatible gateway."""
    apps: tuple[Path, ...] = ()
    """App spec files (or folders of *.yaml app files) served by `hybrid serve`."""

    @model_validator(mode="after")
    def _merged_engines_fit(self) -> HybridConfig:
        problems = []
        urls = [m.url for m in self.merged_engines if m.url is not None]
        twice = sorted({url for url in urls if urls.count(url) > 1})
        if twice:
            problems.append(
                f"merged_engines lists {', '.join(twice)} more than once; a merged engine "
                "serves one adapter version, list each server once"
            )
        started = [m.engine_name for m in self.merged_engines if m.started_here]
        again = sorted({name for name in started if started.count(name) > 1})
        if again:
            problems.append(
                f"merged_engines starts {', '.join(again)} more than once (entries without "
                "url); hybrid serve starts one engine per version, list it once"
            )
        if started and self.engine is None and self.remote_engines is not None:
            problems.append(
                f"merged_engines: {', '.join(sorted(set(started)))} has no url, so hybrid serve "
                "would start it with the settings of `engine`, but only remote_engines are "
                "configured; "
                "add url (a merged engine you started) or an engine section"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def with_data_dir(config: HybridConfig, data_dir: Path) -> HybridConfig:
    """`config` with its knowledge bases in an embedded store at `data_dir` (`--data-dir`)."""
    return config.model_copy(update={"store": EmbeddedStoreConfig(path=data_dir)})


def load_config(path: Path | None) -> HybridConfig:
    """Read a config file; `None` reads ./hybrid.yaml when it exists, else uses the defaults.

    Relative paths (store, registry, base model, apps, engine model and log) are taken
    relative to the config file's folder (without a file: the working directory) and made
    absolute: the registry's paths are sent to engines, whose working directory is not ours (a
    remote vLLM would look for `.hybrid/adapters/...` in its own).

    Raises:
        ConfigError: file missing, not YAML, or invalid (every problem listed).
    """
    if path is None:
        if not DEFAULT_CONFIG_FILE.exists():
            return _resolved(HybridConfig(), Path.cwd())
        path = DEFAULT_CONFIG_FILE
    raw = read_yaml_mapping(path, hint="; create it or drop --config")
    return _resolved(validate(HybridConfig, raw, str(path)), path.parent)


def _resolved(config: HybridConfig, base: Path) -> HybridConfig:
    paths = [*HYBRID_PATHS]
    if isinstance(config.store, EmbeddedStoreConfig):
        paths.append("store.path")
    return with_paths_resolved(config, base, paths, model_refs=["engine.model"])


class ContextTraining(Frozen):
    """`context:` in a training config: train on prompts laid out as an app serves them (its
    persona and template, with passages retrieved from its knowledge base for each example's
    question), so what is trained is what is served (the RAFT recipe)."""

    app: Path
    """The app spec whose prompt layout, knowledge base and retrieval settings are used."""
    share: float = Field(default=1.0, ge=0, le=1)
    """Share of the chat examples that get retrieved context; the rest keep their own prompt."""
    seed: int = 0
    grounded_examples: int = Field(default=0, ge=0, le=100_000)
    """Extra grounded-voice examples built from the knowledge base (hybrid/apps/
    grounded_examples.py): a passage among distractors, a question about one of its figures, the
    answer copying it with its [n] citation in the adapter's voice, every figure perturbed so
    only copying from the context is right."""
    opening_share: float = Field(default=0.0, ge=0, le=1)
    """Share of the grounded answers that open with a sentence of the voice before the copied
    fact; the rest state the fact first and close in the voice. 0 by measurement: at 0.3 the
    adapter opened 17 of 68 report answers with an opinion and never reached the fact (all 17
    wrong; docs/fine-tuning.md)."""
    abstention_examples: int = Field(default=0, ge=0, le=100_000)
    """Extra examples the passages do not answer, answered with the app's no-context message
    (hybrid/apps/abstention_examples.py): off-topic questions with the passages the app's
    search returns for them, and questions about one figure shown only unrelated passages."""
    holdout: tuple[Path, ...] = ()
    """Labelled question files (JSONL with "question") never asked in the grounded or
    abstention examples."""
    train_style_data: bool = True
    """Train on the files under `data:` themselves too. False: they only lend their first and
    last sentences (the voice) to the grounded-voice examples, and the adapter learns from
    those alone: fact answers copied from passages, wrapped in the voice (an adapter for an
    app that always answers from passages). Needs `grounded_examples`."""

    @model_validator(mode="after")
    def _something_to_train(self) -> ContextTraining:
        if not self.train_style_data and not self.grounded_examples:
            raise ValueError(
                "train_style_data: false trains on the grounded-voice examples alone; set "
                "grounded_examples (e.g. 160)"
            )
        return self


def load_context_training(path: Path) -> ContextTraining | None:
    """The `context:` section of a training config, if any (paths relative to the file).

    Raises:
        ConfigError: the section is invalid.
    """
    raw = read_yaml_mapping(path).get("context")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: context: expected a mapping like {{app: app.yaml}}")
    context = validate(ContextTraining, raw, f"{path} (context)")
    return with_paths_resolved(context, path.parent, CONTEXT_PATHS)


def load_train_config(path: Path, overrides: dict | None = None) -> TrainConfig:
    """Read a training config (`hybrid train CONFIG.yaml`). Paths in it are relative to the file;
    paths in `overrides` (command-line options) are taken as given. The `context:` section is
    Hybrid's, read by `load_context_training`.

    Raises:
        ConfigError: every problem of the file at once.
    """
    raw = {**read_yaml_mapping(path), **(overrides or {})}
    raw.pop("context", None)
    config = validate(TrainConfig, as_lists(raw, TrainConfig, ["data"]), str(path))
    if not config.data:
        raise ConfigError(f"{path}: data: give at least one training file or folder")
    return with_paths_resolved(
        config, path.parent, TRAIN_PATHS, model_refs=["base_model"], keep=_given(overrides)
    )


def load_eval_config(path: Path | None, overrides: dict) -> EvalConfig:
    """Eval settings from an optional YAML (paths relative to it) plus command-line overrides."""
    raw = read_yaml_mapping(path) if path is not None else {}
    raw = as_lists({**raw, **overrides}, EvalConfig, ["data", "general", "prompts"])
    config = validate(EvalConfig, raw, str(path or "options"))
    base = path.parent if path is not None else Path.cwd()
    return with_paths_resolved(config, base, EVAL_PATHS, keep=_given(overrides))


def _given(overrides: dict | None) -> list[str]:
    """Override keys whose values are paths already (command-line options, taken as given);
    `--set key=value` strings follow the file's rule."""
    return [
        key
        for key, value in (overrides or {}).items()
        if isinstance(value, Path)
        or (isinstance(value, list | tuple) and value and all(isinstance(v, Path) for v in value))
    ]
