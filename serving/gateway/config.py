"""Typed, frozen settings of the gateway. `hybrid/config.py` places them in the YAML."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from serving.frozen import Frozen

_SHA256 = re.compile(r"[0-9a-f]{64}")
_HOST = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\.?)(:\d{1,5})?")
_ORIGIN = re.compile(
    r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:\d{1,5})?"
)


def hash_key(key: str) -> str:
    """The sha256 hex digest under which a key is stored (keys themselves are never stored)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiKey(Frozen):
    """One client key, stored as its sha256 (make one with `hybrid keys new`)."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    """Who holds the key; shown in logs and metrics instead of the key."""
    sha256: str
    """sha256 hex digest of the key."""
    models: tuple[str, ...] | None = None
    """Models (base, adapters, apps) this key may use; None: all of them."""

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHA256.fullmatch(value):
            raise ValueError(
                "sha256 must be 64 hex characters (the digest of the key, not the key itself); "
                "make one with `hybrid keys new`"
            )
        return value


class AuthConfig(Frozen):
    """Bearer API keys. With none configured, the gateway only listens on loopback."""

    api_keys: tuple[ApiKey, ...] = ()
    """Keys for the OpenAI routes (/v1/...)."""
    admin_keys: tuple[ApiKey, ...] = ()
    """Keys for the admin routes (/admin/...); an admin key may also use every model."""

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys or self.admin_keys)

    @model_validator(mode="after")
    def _admin_keys_have_no_scope(self) -> AuthConfig:
        scoped = [k.name for k in self.admin_keys if k.models is not None]
        if scoped:
            raise ValueError(
                f"admin_keys {scoped} list 'models', but an admin key may use every model and "
                "the admin routes; remove 'models' there, or list the key under api_keys to "
                "limit it to those models"
            )
        return self

    @model_validator(mode="after")
    def _unique(self) -> AuthConfig:
        digests = [k.sha256 for k in (*self.api_keys, *self.admin_keys)]
        if len(digests) != len(set(digests)):
            raise ValueError("the same key is listed twice; give every client its own key")
        return self


class GatewayConfig(Frozen):
    """The OpenAI-compatible HTTP gateway in front of the engine(s)."""

    host: str = "127.0.0.1"
    """Interface to listen on. Anything but loopback requires API keys."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """TCP port of the gateway."""
    auth: AuthConfig = AuthConfig()
    """API keys; none (the default) is only allowed on loopback."""
    request_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    """How long one generation may take at the engine before the gateway gives up."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    """Larger request bodies are refused with 413."""
    max_pending_requests: Annotated[int, Field(ge=1)] | None = 256
    """Generation requests held at once (running in the engine or waiting for it); past it the
    gateway answers 429 with Retry-After instead of piling up. None: no limit."""
    drain_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    """How long unloading an adapter waits for its requests in flight to finish."""
    unload_previous_on_promote: bool = True
    """After a promote, unload the previous version once its requests in flight are done."""
    health_interval_s: Annotated[float, Field(gt=0)] = 5.0
    """How often the gateway re-checks engine health and their adapter lists."""
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    """Gateway processes sharing the port (`hybrid serve --workers N`); each takes
    max_pending_requests / workers of the admission limit (docs/serving.md)."""
    lease_dir: Path | None = None
    """Folder of the adapter lease files (drain-on-promote and unload across gateway processes,
    serving/adapters/leases.py). None: one process counts in memory, `--workers` use a scratch
    folder of their host. Set it, on NFS v4 beside a shared registry, when gateways on several
    hosts share engines, so a promote on one waits for the others' requests (docs/serving.md)."""
    allowed_hosts: tuple[str, ...] = ()
    """Without keys, the gateway answers only requests addressed to a loopback name on its own
    port (`Host: 127.0.0.1:8080`, `localhost:8080`); these Host values too (`name` for any
    port, `name:port` for one), e.g. `localhost:9000` behind an SSH tunnel. Guards against DNS
    rebinding; with keys, any Host is answered."""
    allowed_origins: tuple[str, ...] = ()
    """Without keys, web pages of these origins (`https://site.example:8443`) may call the
    OpenAI routes too (same-origin and loopback pages always may); never the admin routes."""

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        bad = [h for h in hosts if not _HOST.fullmatch(h)]
        if bad:
            raise ValueError(
                f"allowed_hosts {bad} are not host names with an optional port (e.g. "
                "'localhost:9000', 'gpu-box.internal'); no scheme, path or wildcard"
            )
        return tuple(h.lower().rstrip(".") for h in hosts)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        bad = [o for o in origins if not _ORIGIN.fullmatch(o)]
        if bad:
            raise ValueError(
                f"allowed_origins {bad} are not web origins: write scheme://host[:port] with "
                "no path or trailing slash (e.g. 'https://intranet.example'); '*' is not "
                "allowed, configure API keys to serve every site"
            )
        return tuple(o.lower() for o in origins)

    @model_validator(mode="after")
    def _pending_per_worker(self) -> GatewayConfig:
        pending = self.max_pending_requests
        if pending is not None and pending < self.workers:
            raise ValueError(
                f"gateway.max_pending_requests ({pending}) is below gateway.workers "
                f"({self.workers}): each worker admits max_pending_requests / workers requests; "
                "raise the limit or use fewer workers"
            )
        return self

    def per_worker(self) -> GatewayConfig:
        """This config as one of `workers` processes sees it: its share of the admission limit."""
        if self.workers == 1 or self.max_pending_requests is None:
            return self
        return self.model_copy(
            update={"max_pending_requests": self.max_pending_requests // self.workers}
        )

    @model_validator(mode="after")
    def _keys_off_loopback(self) -> GatewayConfig:
        if not self.auth.enabled and not is_loopback(self.host):
            raise ValueError(
                f"gateway.host {self.host} is not loopback and no API keys are configured; "
                "add gateway.auth.api_keys and admin_keys (`hybrid keys new`), or listen on "
                "127.0.0.1"
            )
        return self
