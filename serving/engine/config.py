"""Typed, frozen settings of the inference engine: one supervised vLLM server, or vLLM servers
that already run elsewhere. `hybrid/config.py` places them in the YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from serving.engine.tools import chat_template, parser_for_template
from serving.frozen import Frozen

# `--max-lora-rank` is a choice in vLLM 0.32 (`vllm serve --help=all`); anything else is refused
# by vLLM's argument parser after a ~10 s import, so we refuse it here first.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# Flags the supervisor sets itself from typed fields; passing them in `extra_args` would make two
# sources of truth (and vLLM silently takes the last one).
MANAGED_FLAGS = {
    "--model": "model",
    "--served-model-name": "served_model_name",
    "--host": "host",
    "--port": "port",
    "--dtype": "dtype",
    "--max-model-len": "max_model_len",
    "--enable-lora": "(always on)",
    "--max-loras": "max_loras",
    "--max-lora-rank": "max_lora_rank",
    "--max-cpu-loras": "max_cpu_loras",
    "--api-key": "api_key",
    "--enable-auto-tool-choice": "tool_call_parser",
    "--tool-call-parser": "tool_call_parser",
}


class RestartPolicy(Frozen):
    """When a supervised server dies: how often it is restarted, and how long to wait first.

    Like systemd's StartLimitBurst: at most `max_restarts` restarts within `window_s`; the n-th
    restart inside the window waits `backoff_s * 2**(n-1)`, capped at `backoff_max_s`.
    """

    max_restarts: Annotated[int, Field(ge=0, le=100)] = 3
    """Restarts allowed inside one window; 0 never restarts (a death is reported, not healed)."""
    window_s: Annotated[float, Field(gt=0)] = 600.0
    """Sliding window in seconds over which restarts are counted."""
    backoff_s: Annotated[float, Field(ge=0)] = 1.0
    """Wait before the first restart in a window; doubles for each further one."""
    backoff_max_s: Annotated[float, Field(ge=0)] = 30.0
    """Upper bound of the wait before a restart."""


class EngineConfig(Frozen):
    """One vLLM OpenAI-compatible server that Hybrid starts, watches and restarts itself."""

    model: str
    """Base model: a local folder (or a model id already in the local Hugging Face cache)."""
    served_model_name: str | None = None
    """Name clients use for the base model; default: `model` as given."""
    served_model_aliases: tuple[str, ...] = ()
    """Further names the server lists and answers to (vLLM takes several served names; its
    answers carry the first): a merged engine's digest name (docs/serving.md, "Merged fast
    path")."""
    max_loras: Annotated[int, Field(ge=1, le=256)] = 4
    """Adapters that can be active in one batch (vLLM `--max-loras`)."""
    max_lora_rank: int = 16
    """Largest adapter rank the engine accepts; one of 1, 8, 16, 32, 64, 128, 256, 320, 512."""
    max_cpu_loras: Annotated[int, Field(ge=1)] | None = None
    """Adapters kept in the engine's CPU cache (LRU); default: vLLM's (= max_loras)."""
    max_model_len: Annotated[int, Field(ge=16)] | None = None
    """Context length in tokens; default: the model's own. Small values save KV cache memory."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight and activation dtype; `auto` takes the checkpoint's."""
    kv_cache_gib: Annotated[int, Field(ge=1)] | None = None
    """KV cache size in GiB on the CPU engine (VLLM_CPU_KVCACHE_SPACE, whole GiB only);
    default: vLLM's. On GPUs use `extra_args: [--gpu-memory-utilization, "0.5"]` instead."""
    host: str = "127.0.0.1"
    """Interface the server listens on."""
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    """TCP port; 0 picks a free one at the first start and keeps it across restarts."""
    api_key: str | None = Field(default=None, repr=False)
    """The key the server requires (`Authorization: Bearer <api_key>`) on every route but
    /health; default: a secret generated at each start of the supervisor, known only to it and
    its gateway. Passed in the server's environment, never on its command line."""
    tool_call_parser: str | None = "auto"
    """vLLM tool-call parser (`--tool-call-parser`), so requests with `tools` work: `auto`
    picks it from the model's chat template (ChatML or `<tool_call>`: hermes, `[TOOL_CALLS]`:
    mistral, `<|python_tag|>`: llama3_json; none of these: tools off), a name forces one,
    null turns tool calling off (requests with `tools` then get 400)."""
    extra_args: tuple[str, ...] = ()
    """Further vLLM command-line arguments, e.g. ["--enforce-eager"]."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the server process only (this process is untouched)."""
    offline: bool = True
    """Set HF_HUB_OFFLINE=1 for the server, so it never contacts a model hub."""
    python: Path | None = None
    """Interpreter that has vLLM installed; default: the one running Hybrid."""
    log_file: Path | None = None
    """Where the server's stdout and stderr go (appended); default: a new temporary file."""
    startup_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    """How long a start may take until /health and /v1/models answer (CPU: ~60-80 s)."""
    stop_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    """How long a stop waits after SIGTERM before it kills the whole process group."""
    watch_interval_s: Annotated[float, Field(gt=0)] = 1.0
    """How often the watchdog checks that the server process is alive (no HTTP, cheap)."""
    probe_interval_s: Annotated[float, Field(gt=0)] = 10.0
    """How often the watchdog asks GET /health (each probe is a line in the vLLM access log)."""
    unhealthy_after: Annotated[int, Field(ge=1)] = 3
    """Consecutive failed /health probes of a running process before it counts as hung and is
    restarted."""
    restart: RestartPolicy = RestartPolicy()
    """What happens when the server dies."""

    @field_validator("max_lora_rank")
    @classmethod
    def _known_rank(cls, value: int) -> int:
        if value not in VLLM_LORA_RANKS:
            allowed = ", ".join(map(str, VLLM_LORA_RANKS))
            raise ValueError(
                f"max_lora_rank {value} is not one vLLM accepts; use one of {allowed} "
                "that is at least the largest adapter rank you serve"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model is empty; give the base model folder, e.g. models/smollm2")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> EngineConfig:
        problems = []
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            problems.append(
                f"max_cpu_loras ({self.max_cpu_loras}) must be at least max_loras "
                f"({self.max_loras}); raise max_cpu_loras or lower max_loras"
            )
        for arg in self.extra_args:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                problems.append(
                    f"extra_args sets {flag}, which the supervisor manages; "
                    f"use the `{MANAGED_FLAGS[flag]}` setting instead"
                )
        if self.restart.backoff_max_s < self.restart.backoff_s:
            problems.append(
                f"restart.backoff_max_s ({self.restart.backoff_max_s}) is below "
                f"restart.backoff_s ({self.restart.backoff_s}); raise backoff_max_s"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def tool_parser(self) -> str | None:
        """The tool-call parser the server is started with (None: tool calling off)."""
        if self.tool_call_parser in (None, "", "none"):
            return None
        if self.tool_call_parser != "auto":
            return self.tool_call_parser
        return parser_for_template(chat_template(self.model))

    @property
    def base_model_name(self) -> str:
        """The model id the server lists for the base model."""
        return self.served_model_name or self.model


class RemoteEngineConfig(Frozen):
    """vLLM servers that run already (started by someone else); Hybrid only talks to them."""

    urls: tuple[str, ...]
    """Base URLs without /v1, e.g. ["http://10.0.0.5:8000"]."""
    api_key: str | None = Field(default=None, repr=False)
    """Sent as `Authorization: Bearer <api_key>` when the servers were started with --api-key."""
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """Per-request timeout for health checks and adapter (un)loading."""
    fetch_adapters: bool = False
    """The servers cannot read the gateway's registry folder (no shared file system): they run
    Hybrid's LoRA resolver plugin and fetch each adapter version from the gateway by name
    (docs/serving.md, "Scale-out"); the gateway never sends them a path. Off: the servers
    load `registry/store/<name>/<version>` at the gateway's path."""

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        if not urls:
            raise ValueError("urls is empty; list at least one server, e.g. http://127.0.0.1:8000")
        cleaned: list[str] = []
        problems = []
        for url in urls:
            base, problem = _server_root(url)
            if problem is None and base in cleaned:
                problem = f"'{url}' is listed twice; list each server once"
            if problem is not None:
                problems.append(problem)
                continue
            cleaned.append(base)
        if problems:
            raise ValueError("; ".join(problems))
        return tuple(cleaned)


def _server_root(url: str) -> tuple[str, str | None]:
    """A server's root URL without a trailing slash, and what is wrong with it (or None)."""
    base = url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return base, f"'{url}' is not an http(s) URL (e.g. http://127.0.0.1:8000)"
    if base.endswith("/v1"):
        return base, f"'{url}' ends in /v1; give the server root ({base[:-3]})"
    return base, None


class MergedEngineConfig(Frozen):
    """A vLLM server that runs one adapter version merged into the base model. While `version`
    is the adapter's current version and the server is healthy, requests for the adapter go
    there instead of the LoRA path (docs/serving.md, "Merged fast path").

    With `url`, the server runs already (made with `hybrid adapter merge name@version`, started
    with the served names the merge printed). Without it, `hybrid serve` merges the version and
    starts and supervises the server itself, with the engine's settings."""

    adapter: str = Field(min_length=1)
    """The registered adapter's name, e.g. ceo-voice."""
    version: str = Field(min_length=1)
    """The registered version that was merged, e.g. v3."""
    url: str | None = None
    """The server's root URL without /v1, e.g. http://10.0.0.7:8001; leave it out to have
    `hybrid serve` start the merged engine itself."""
    api_key: str | None = Field(default=None, repr=False)
    """Sent as `Authorization: Bearer <api_key>` when the server at `url` was started with
    --api-key (a merged engine `hybrid serve` starts gets a secret of its own)."""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """Without `url`: the TCP port of the merged engine `hybrid serve` starts; default: a free
    one."""
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """Timeout of its health checks (GET /v1/models)."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        base, problem = _server_root(url)
        if problem is not None:
            raise ValueError(problem)
        return base

    @field_validator("adapter", "version")
    @classmethod
    def _no_at(cls, value: str) -> str:
        if "@" in value:
            raise ValueError(
                f"'{value}' holds '@'; write the name and the version apart "
                "(adapter: ceo-voice, version: v3)"
            )
        return value

    @model_validator(mode="after")
    def _url_or_started(self) -> MergedEngineConfig:
        problems = []
        if self.url is not None and self.port is not None:
            problems.append(
                f"port is for a merged engine hybrid serve starts (no url), but {self.url} "
                "runs already; drop port (or drop url to have it started)"
            )
        if self.url is None and self.api_key is not None:
            problems.append(
                f"api_key is the key of a server you started (url), but {self.engine_name} has "
                "no url: hybrid serve starts it with a secret of its own; drop api_key or add url"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def engine_name(self) -> str:
        """The name the version is served under, `name@version`."""
        return f"{self.adapter}@{self.version}"

    @property
    def started_here(self) -> bool:
        """No `url`: the merged engine is started and supervised by whoever serves the config."""
        return self.url is None
