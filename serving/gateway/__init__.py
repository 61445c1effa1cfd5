"""The OpenAI-compatible gateway: FastAPI routes (`routes`, `app`, request bodies checked in
`bodies`) over handler classes that know nothing of HTTP (`handlers` with `models`,
`admission`, `streams`, `canned`; `admin`), with errors mapped to OpenAI's shape in one place
(`errors`)."""

from serving.gateway.app import create_app
from serving.gateway.auth import KeyRing, Principal
from serving.gateway.composing import ChatComposer, PreparedChat
from serving.gateway.config import ApiKey, AuthConfig, GatewayConfig, hash_key
from serving.gateway.handlers import InferenceHandler
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.models import ModelInfo
from serving.gateway.state import GatewayState

__all__ = [
    "ApiKey",
    "AuthConfig",
    "ChatComposer",
    "GatewayConfig",
    "GatewayMetrics",
    "GatewayState",
    "InferenceHandler",
    "KeyRing",
    "ModelInfo",
    "PreparedChat",
    "Principal",
    "create_app",
    "hash_key",
]
