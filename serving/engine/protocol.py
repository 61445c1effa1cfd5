"""vLLM's HTTP wire format, as pure functions shared by the async client and the supervisor:
model listings in, typed serving errors out. No I/O here, so every mapping is unit-testable.

vLLM error bodies look like `{"error": {"message", "type", "param", "code"}}` (code is an int);
measured answers of vLLM 0.32 on CPU:

- load, folder without an adapter: 404 NotFoundError "Loading lora X failed: No adapter found for
  <path>" (vLLM hides the path, so our message adds it);
- load, rank above --max-lora-rank: 500 "Call to add_lora method failed: Worker failed with error
  'LoRA rank 16 is greater than max_lora_rank 8.', ...";
- load, name taken: 400 InvalidUserInput "The lora adapter 'X' has already been loaded. ...";
- unload, unknown name: 404 NotFoundError "The lora adapter 'X' cannot be found.".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from serving.errors import (
    AdapterAlreadyLoaded,
    AdapterLoadError,
    AdapterNotLoaded,
    EngineRequestError,
    InvalidAdapterName,
)

Action = Literal["load", "fetch", "unload", "models", "health", "generate"]

_MAX_ENGINE_MESSAGE = 600
_NAME_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ModelCard:
    """One entry of GET /v1/models: the base model (parent None) or a LoRA adapter."""

    id: str
    root: str | None = None
    """The folder the model or adapter was loaded from."""
    parent: str | None = None
    """For an adapter: the id of its base model."""
    max_model_len: int | None = None

    @property
    def is_adapter(self) -> bool:
        return self.parent is not None


def bearer(api_key: str | None) -> dict[str, str]:
    """The `Authorization` header for a server's API key (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def parse_models(payload: object) -> list[ModelCard]:
    """The cards of a GET /v1/models answer; raises ValueError when the shape is not OpenAI's."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise ValueError(f"expected {{'data': [...]}} from /v1/models, got {str(payload)[:200]}")
    cards = []
    for item in payload["data"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValueError(f"model entry without an id in /v1/models: {str(item)[:200]}")
        cards.append(
            ModelCard(
                id=item["id"],
                root=item.get("root"),
                parent=item.get("parent"),
                max_model_len=item.get("max_model_len"),
            )
        )
    return cards


def adapters_of(cards: list[ModelCard]) -> dict[str, str]:
    """Adapter name -> folder, from a model listing."""
    return {card.id: card.root or "" for card in cards if card.is_adapter}


def check_adapter_name(name: str, base_model: str | None = None) -> str:
    """Return `name` if the engine can serve an adapter under it, else raise with the rule."""
    if not name or len(name) > 256 or _NAME_FORBIDDEN.search(name):
        raise InvalidAdapterName(
            f"invalid adapter name {name!r}: use 1-256 characters without spaces or control "
            "characters (e.g. 'support-voice@v2')"
        )
    if base_model is not None and name == base_model:
        raise InvalidAdapterName(
            f"adapter name '{name}' is the base model's name; pick another name so requests for "
            "the base model still reach it"
        )
    return name


def engine_error_fields(body: str) -> tuple[str, str]:
    """(type, message) of a vLLM error body; plain-text or odd bodies give ("", text)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "", body.strip()[:_MAX_ENGINE_MESSAGE]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message", "")).strip()
        return str(error.get("type") or ""), message[:_MAX_ENGINE_MESSAGE]
    if isinstance(payload, dict) and "detail" in payload:  # FastAPI's own errors (e.g. 401)
        return "", str(payload["detail"])[:_MAX_ENGINE_MESSAGE]
    return "", body.strip()[:_MAX_ENGINE_MESSAGE]


def _load_fix(engine_message: str) -> str:
    lowered = engine_message.lower()
    if "no adapter found" in lowered:
        return (
            "the folder must hold adapter_config.json and adapter_model.safetensors as written by "
            "PEFT's save_pretrained, at a path the engine's machine can read"
        )
    if "max_lora_rank" in lowered:
        return "start the engine with a larger max_lora_rank (EngineConfig.max_lora_rank)"
    if "doesn't contain tensors" in lowered or "safetensors" in lowered:
        return "adapter_model.safetensors is missing or empty; save the adapter again with PEFT"
    if "expecting" in lowered and "line" in lowered:  # json.JSONDecodeError text
        return "adapter_config.json is not valid JSON; save the adapter again with PEFT"
    if "max_loras" in lowered or "max_cpu_loras" in lowered:
        return "unload an adapter first, or raise max_cpu_loras"
    return "see the engine's log for the full trace"


def _fetch_fix(status_code: int) -> str:
    if status_code == 404:
        return (
            "the server has no resolver that knows it: start it with Hybrid's plugin folder on "
            "its PYTHONPATH, VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and HYBRID_GATEWAY_URL "
            "(docs/serving.md, Scale-out)"
        )
    return "the message is the server's resolver's; its log has the details"


def engine_error(
    status_code: int,
    body: str,
    *,
    url: str,
    action: Action,
    adapter: str | None = None,
    path: str | None = None,
) -> EngineRequestError:
    """The typed error for a non-2xx answer of a vLLM server to `action`."""
    error_type, engine_message = engine_error_fields(body)
    fields = {
        "url": url,
        "status_code": status_code,
        "error_type": error_type,
        "engine_message": engine_message,
    }
    said = f"{status_code} {error_type}".strip() + f": {engine_message or '(empty body)'}"
    if status_code == 401:
        return EngineRequestError(
            f"engine at {url} refused the request ({said}); set the engine's api_key in the "
            "config to the key the server was started with",
            **fields,
        )
    if action == "load":
        if "already been loaded" in engine_message:
            return AdapterAlreadyLoaded(
                f"adapter '{adapter}' is already loaded on {url} ({said}); unload it first to "
                "replace it, or load the new folder under another name",
                **fields,
            )
        return AdapterLoadError(
            f"engine at {url} could not load adapter '{adapter}' from {path} ({said}); "
            + _load_fix(engine_message),
            **fields,
        )
    if action == "fetch":
        return AdapterLoadError(
            f"engine at {url} could not fetch adapter '{adapter}' from the gateway ({said}); "
            + _fetch_fix(status_code),
            **fields,
        )
    if action == "unload" and status_code == 404:
        return AdapterNotLoaded(
            f"adapter '{adapter}' is not loaded on {url} ({said}); "
            "list what is loaded with GET /v1/models",
            **fields,
        )
    return EngineRequestError(
        f"engine at {url} answered {action} with {said}; see the engine's log", **fields
    )
