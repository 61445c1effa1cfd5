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
    adapters:
      registry: .hybrid/adapters
      preload: [support-voice]
    gateway: {host: 127.0.0.1, port: 8080}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finetune.config import TrainConfig
from finetune.evaluation import EvalConfig
from hybrid.errors import ConfigError
from retrieval import EmbeddedStoreConfig, KnowledgeBaseSettings, StoreConfig
from serving.engine import EngineConfig, RemoteEngineConfig
from serving.gateway import GatewayConfig

DEFAULT_CONFIG_FILE = Path("hybrid.yaml")


class AdapterSettings(BaseModel):
    """Where versioned adapters live, and which are loaded when the server starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry: Path = Path(".hybrid/adapters")
    """Folder of the adapter registry (index.json + checked copies of each version)."""
    preload: tuple[str, ...] = ()
    """Adapters (`name` or `name@version`) loaded at start instead of on first use."""
    max_adapter_mib: Annotated[int, Field(ge=1)] | None = None
    """Largest adapter folder accepted, in MiB; default: a LoRA of the engine's max rank on every
    linear layer of the base model in fp32, twice, plus 16 MiB (docs/adapter-format.md)."""


class HybridConfig(BaseModel):
    """Top-level config. Sub-configs belong to the layer that consumes them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: StoreConfig = Field(default_factory=EmbeddedStoreConfig)
    """Vector store holding the knowledge bases (embedded Chroma or a Chroma server)."""
    knowledge_base_defaults: KnowledgeBaseSettings = KnowledgeBaseSettings()
    """Chunking and embedder used by `hybrid kb create` unless options say otherwise."""
    engine: EngineConfig | None = None
    """A vLLM server `hybrid serve` starts and supervises (default when neither this nor
    remote_engines is set: the embedded SmolLM2-135M-Instruct)."""
    remote_engines: RemoteEngineConfig | None = None
    """vLLM servers that run already; `hybrid serve` attaches to them."""
    base_model: Path | None = None
    """Folder of the base model the engines serve, for adapter checks; default engine.model.
    Required with remote_engines alone."""
    adapters: AdapterSettings = AdapterSettings()
    """The adapter registry and what is loaded at start."""
    gateway: GatewayConfig = GatewayConfig()
    """The OpenAI-compatible gateway."""
    apps: tuple[Path, ...] = ()
    """App spec files (or folders of *.yaml app files) served by `hybrid serve`."""


def format_validation_error(exc: ValidationError, source: str) -> str:
    """All problems of one validation, each as `where: problem (got value)`, in one line."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        problems.append(f"{where}: {message}{shown}")
    return f"{source}: {len(problems)} problem(s): " + "; ".join(problems)


def load_config(path: Path | None) -> HybridConfig:
    """Read a config file; `None` reads ./hybrid.yaml when it exists, else uses the defaults.

    Relative paths (store, registry, base model, apps, engine model and log) are taken
    relative to the config file's folder (without a file: the working directory) and made
    absolute.

    Raises:
        ConfigError: file missing, not YAML, or invalid (every problem listed).
    """
    if path is None:
        if not DEFAULT_CONFIG_FILE.exists():
            return _relative_to(HybridConfig(), Path.cwd())
        path = DEFAULT_CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"config file not found: {path}; create it or drop --config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    try:
        config = HybridConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc
    return _relative_to(config, path.parent)


def _relative_to(config: HybridConfig, base: Path) -> HybridConfig:
    """Paths in a config file are relative to the file's folder, and made absolute here: the
    registry's paths are sent to engines, whose working directory is not ours (a remote vLLM
    would look for `.hybrid/adapters/...` in its own)."""
    base = base.expanduser().absolute()

    def rel(path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else base / path

    update: dict = {}
    store = config.store
    if isinstance(store, EmbeddedStoreConfig):
        update["store"] = store.model_copy(update={"path": rel(store.path)})
    update["adapters"] = config.adapters.model_copy(
        update={"registry": rel(config.adapters.registry)}
    )
    if config.base_model is not None:
        update["base_model"] = rel(config.base_model)
    update["apps"] = tuple(rel(path) for path in config.apps)
    engine = config.engine
    if engine is not None:
        changes: dict = {}
        if engine.model.startswith(("./", "../")) or (base / engine.model).is_dir():
            changes["model"] = str(rel(Path(engine.model)))
        if engine.log_file is not None:
            changes["log_file"] = rel(engine.log_file)
        update["engine"] = engine.model_copy(update=changes)
    return config.model_copy(update=update)


def _read_yaml_mapping(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    return raw


class ContextTraining(BaseModel):
    """`context:` in a training config: train on prompts laid out as an app serves them (its
    persona and template, with passages retrieved from its knowledge base for each example's
    question), so what is trained is what is served (the RAFT recipe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
    holdout: tuple[Path, ...] = ()
    """Labelled question files (JSONL with "question") never asked in the grounded examples."""


def load_context_training(path: Path) -> ContextTraining | None:
    """The `context:` section of a training config, if any (paths relative to the file).

    Raises:
        ConfigError: the section is invalid.
    """
    raw = _read_yaml_mapping(path).get("context")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: context: expected a mapping like {{app: app.yaml}}")
    if isinstance(raw.get("app"), str):
        app = Path(raw["app"]).expanduser()
        raw = {**raw, "app": app if app.is_absolute() else path.parent / app}
    if isinstance(raw.get("holdout"), list):
        raw = {**raw, "holdout": [path.parent / Path(p).expanduser() for p in raw["holdout"]]}
    try:
        return ContextTraining.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{path} (context)")) from exc


def load_train_config(path: Path, overrides: dict | None = None) -> TrainConfig:
    """Read a training config (`hybrid train CONFIG.yaml`). Paths in it are relative to the file;
    paths in `overrides` (command-line options) are taken as given. The `context:` section is
    Hybrid's, read by `load_context_training`.

    Raises:
        ConfigError: every problem of the file at once.
    """
    raw = {**_read_yaml_mapping(path), **(overrides or {})}
    raw.pop("context", None)
    base = path.parent

    def rel(value):
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    if isinstance(raw.get("data"), str | Path):
        raw["data"] = [raw["data"]]
    if isinstance(raw.get("data"), list):
        raw["data"] = [rel(p) for p in raw["data"]]
    if isinstance(raw.get("output_dir"), str):
        raw["output_dir"] = rel(raw["output_dir"])
    replay = raw.get("replay")
    if isinstance(replay, dict) and isinstance(replay.get("paths"), list):
        raw["replay"] = {**replay, "paths": [rel(p) for p in replay["paths"]]}
    base_model = raw.get("base_model")
    if isinstance(base_model, str) and base_model.startswith(("./", "../")):
        raw["base_model"] = str(rel(base_model))
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc
    if not config.data:
        raise ConfigError(f"{path}: data: give at least one training file or folder")
    return config


def load_eval_config(path: Path | None, overrides: dict) -> EvalConfig:
    """Eval settings from an optional YAML (paths relative to it) plus command-line overrides."""
    raw = _read_yaml_mapping(path) if path is not None else {}
    base = path.parent if path is not None else Path.cwd()

    def rel(value):
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    for key in ("data", "general", "prompts"):
        if isinstance(raw.get(key), str):
            raw[key] = [raw[key]]
        if isinstance(raw.get(key), list):
            raw[key] = [rel(p) for p in raw[key]]
    for key in ("adapter", "output_dir"):
        if isinstance(raw.get(key), str):
            raw[key] = rel(raw[key])
    raw.update(overrides)
    try:
        return EvalConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path or "options"))) from exc
