"""How a vLLM server is launched: its argv, its environment, the checks before it starts, and
how long to wait before a restart. Plain functions of the config; `EngineProcess` runs them."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from serving.engine.config import EngineConfig, RestartPolicy
from serving.errors import EngineStartError

GUARD_DIR = Path(__file__).resolve().parent / "vllm_plugins"
"""Put on the server's PYTHONPATH: `hybrid_engine_guard`, the middleware that requires the
engine key on every route but /health (standard library only), and the vLLM general plugin
`hybrid_cpu_seeded_sampling` (found through the dist-info beside it) that keeps a seeded
request from killing a CPU engine."""
GUARD_MIDDLEWARE = "hybrid_engine_guard.EngineGuard"


def build_command(config: EngineConfig, port: int) -> list[str]:
    """The argv that starts the vLLM server for `config` on `port`."""
    python = str(config.python) if config.python else sys.executable
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", config.model]
    cmd += ["--host", config.host, "--port", str(port), "--dtype", config.dtype]
    if config.served_model_name or config.served_model_aliases:
        cmd += ["--served-model-name", config.base_model_name, *config.served_model_aliases]
    if config.max_model_len is not None:
        cmd += ["--max-model-len", str(config.max_model_len)]
    cmd += ["--enable-lora", "--max-loras", str(config.max_loras)]
    cmd += ["--max-lora-rank", str(config.max_lora_rank)]
    if config.max_cpu_loras is not None:
        cmd += ["--max-cpu-loras", str(config.max_cpu_loras)]
    # The key itself travels in the environment (VLLM_API_KEY, see build_env): an argv is
    # readable by every user of the host in /proc/<pid>/cmdline and `ps`, an environment only
    # by the same user. vLLM's own check guards /v1/*; the guard covers every other route too.
    cmd += ["--middleware", GUARD_MIDDLEWARE]
    parser = config.tool_parser()
    if parser is not None:
        cmd += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
    return cmd + list(config.extra_args)


def build_env(
    config: EngineConfig, base: Mapping[str, str], api_key: str | None = None
) -> dict[str, str]:
    """The child's environment: `base` (normally os.environ) plus what the server needs, with
    `api_key` (default: `config.api_key`) as the key every route but /health requires."""
    env = dict(base)
    env.update(config.env)
    key = api_key or config.api_key
    if key:
        env["VLLM_API_KEY"] = key
    else:
        env.pop("VLLM_API_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(GUARD_DIR), env.get("PYTHONPATH", "")) if p)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # enables /v1/(un)load_lora_adapter
    env["PYTHONUNBUFFERED"] = "1"  # the log must be current when we quote it in an error
    if config.kv_cache_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(config.kv_cache_gib)
    if config.offline:
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def restart_delay(history: Sequence[float], now: float, policy: RestartPolicy) -> float | None:
    """Seconds to wait before the next restart, or None when the policy allows no more.

    `history` holds the monotonic times of earlier restarts; only those inside the window count.
    """
    recent = sum(1 for t in history if now - t < policy.window_s)
    if recent >= policy.max_restarts:
        return None
    return min(policy.backoff_s * 2**recent, policy.backoff_max_s)


def check_launchable(config: EngineConfig) -> None:
    """Refuse a config that cannot start before anything is launched.

    Raises:
        EngineStartError: the model folder has no config.json or does not exist, or the
            configured python interpreter does not.
    """
    model = config.model
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise EngineStartError(
                f"model folder {folder} has no config.json; point `model` at a Hugging Face "
                "model folder (config.json, tokenizer, *.safetensors)"
            )
    elif folder.exists() or model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise EngineStartError(
            f"model folder {folder} does not exist; point `model` at a Hugging Face model "
            "folder, or prepare one with `hybrid model prepare`"
        )
    python = config.python
    if python is not None and not Path(python).is_file():
        raise EngineStartError(
            f"python interpreter {python} does not exist; set `python` to the interpreter "
            "of the environment that has vLLM installed (or leave it unset)"
        )
