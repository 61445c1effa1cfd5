"""Chroma clients: embedded (persistent data directory) or a Chroma server, chosen by config.

Adding a backend: a factory `config -> chromadb client` decorated with `@register_store("mode")`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings

from retrieval.config import EmbeddedStoreConfig, ServerStoreConfig
from retrieval.errors import StoreUnavailable, UnknownComponent

PAGE_ROWS = 5000
"""Rows per Chroma `get`: its SQLite refuses one `get` of ~100k rows ("too many SQL variables",
found by bench/retrieval_bench.py)."""

StoreFactory = Callable[[Any], Any]
_STORES: dict[str, StoreFactory] = {}


def _settings() -> ChromaSettings:
    # A fresh object per client: Chroma writes the client's API implementation into the settings
    # it is given, so a shared object would turn the next embedded client into an HTTP one.
    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def register_store(mode: str) -> Callable[[StoreFactory], StoreFactory]:
    def decorate(factory: StoreFactory) -> StoreFactory:
        _STORES[mode] = factory
        return factory

    return decorate


def connect(config: EmbeddedStoreConfig | ServerStoreConfig) -> chromadb.api.ClientAPI:
    """Open a Chroma client for the configured store.

    Raises:
        StoreUnavailable: the server cannot be reached or the data directory cannot be opened.
    """
    if config.mode not in _STORES:
        raise UnknownComponent("store mode", config.mode, sorted(_STORES))
    return _STORES[config.mode](config)


def read_rows(
    collection, where: dict | None = None, include: tuple[str, ...] = ("metadatas",)
) -> Iterator[tuple[str, str, dict]]:
    """Every row of a Chroma collection (matching `where`) as (id, document, metadata), read
    PAGE_ROWS at a time; what `include` leaves out (or a row lacks) comes as "" and {}."""
    offset = 0
    while True:
        page = collection.get(where=where, limit=PAGE_ROWS, offset=offset, include=list(include))
        ids = page["ids"]
        documents = page.get("documents") or [""] * len(ids)
        metadatas = page.get("metadatas") or [{}] * len(ids)
        for row in zip(ids, documents, metadatas, strict=True):
            yield row[0], row[1] or "", row[2] or {}
        if len(ids) < PAGE_ROWS:
            return
        offset += len(ids)


def describe(config: EmbeddedStoreConfig | ServerStoreConfig) -> str:
    if isinstance(config, ServerStoreConfig):
        scheme = "https" if config.ssl else "http"
        return f"Chroma server {scheme}://{config.host}:{config.port}"
    return f"embedded Chroma at {config.path}"


@register_store("embedded")
def _embedded(config: EmbeddedStoreConfig) -> chromadb.api.ClientAPI:
    path = config.path.expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=_settings())
    except Exception as exc:
        raise StoreUnavailable(
            f"cannot open {describe(config)} ({type(exc).__name__}: {exc}); "
            "check that the directory is writable and not used by another Chroma version"
        ) from exc


@register_store("server")
def _server(config: ServerStoreConfig) -> chromadb.api.ClientAPI:
    try:
        client = chromadb.HttpClient(
            host=config.host,
            port=config.port,
            ssl=config.ssl,
            headers=dict(config.headers),
            settings=_settings(),
        )
        client.heartbeat()
        return client
    except Exception as exc:
        raise StoreUnavailable(
            f"cannot reach {describe(config)} ({type(exc).__name__}); start it with "
            f"`chroma run --path DIR --host {config.host} --port {config.port}` or fix store.host/port"
        ) from exc
