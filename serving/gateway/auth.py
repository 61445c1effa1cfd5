"""Bearer API keys: who is calling, and which models they may see and use.

Keys are configured as sha256 digests and compared in constant time; the key itself is never
stored or logged. With no keys configured (allowed on loopback only) everyone is an admin.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from serving.gateway.config import AuthConfig, hash_key
from serving.gateway.errors import AuthenticationFailed, PermissionDenied


@dataclass(frozen=True)
class Principal:
    name: str
    admin: bool
    models: frozenset[str] | None
    """Models this caller may use; None: all."""

    def may_use(self, model: str) -> bool:
        if self.models is None:
            return True
        return model in self.models or model.partition("@")[0] in self.models

    def require_admin(self) -> None:
        if not self.admin:
            raise PermissionDenied(
                f"key '{self.name}' may not use admin routes; use an admin key "
                "(gateway.auth.admin_keys)"
            )


ANONYMOUS_ADMIN = Principal("anonymous", admin=True, models=None)


class KeyRing:
    def __init__(self, config: AuthConfig):
        self.config = config
        self._entries = [
            (k.sha256, Principal(k.name, False, _scope(k.models))) for k in config.api_keys
        ]
        self._entries += [(k.sha256, Principal(k.name, True, None)) for k in config.admin_keys]

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of a request with this Authorization header.

        Raises:
            AuthenticationFailed: keys are configured and the header has none or an unknown one.
        """
        if not self.config.enabled:
            return ANONYMOUS_ADMIN
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationFailed(
                "missing API key; send it as 'Authorization: Bearer <key>' (OpenAI clients: "
                "api_key=...)"
            )
        digest = hash_key(key.strip())
        found = None
        for stored, principal in self._entries:  # no early exit: same time for every key
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise AuthenticationFailed("invalid API key")
        return found


def _scope(models: tuple[str, ...] | None) -> frozenset[str] | None:
    return None if models is None else frozenset(models)
