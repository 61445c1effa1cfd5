"""Knowledge bases: one Chroma collection each, created, opened, listed and deleted by name.

Why one module: `KnowledgeBase` and `KnowledgeBaseCatalog` share the Chroma client, the collection
marker and the store-outage guard (`_guard_store`); together about 400 lines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from retrieval.config import (
    EmbeddedStoreConfig,
    EmbedderConfig,
    KnowledgeBaseSettings,
    QueryOptions,
    ServerStoreConfig,
    check_kb_name,
)
from retrieval.embedders import Embedder, load_embedder
from retrieval.errors import (
    EmbedderMismatch,
    FileNotInKnowledgeBase,
    KnowledgeBaseExists,
    KnowledgeBaseNotFound,
    RetrievalError,
    StoreUnavailable,
)
from retrieval.floor_cache import FLOORS
from retrieval.ingest import IngestReport, ingest_paths
from retrieval.relevance import relevance_floor
from retrieval.search import Citation, Hit, prepare_keyword_index, search, widen
from retrieval.stores import connect, describe, read_rows

log = logging.getLogger(__name__)

_MARKER = "hybrid_kb"  # collection metadata key that marks our collections (value: schema version)
_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    name: str
    chunks: int
    embedder: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class KnowledgeBaseStats:
    name: str
    store: str
    chunks: int
    files: int
    pages: int
    embedder: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    created_at: str
    updated_at: str
    revision: int
    file_types: dict[str, int]


@dataclass(frozen=True)
class StoredChunk:
    """One chunk as stored: its text, where it comes from, and its place in its file."""

    id: str
    text: str
    citation: Citation
    chunk_index: int
    chunk_count: int


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _guard_store(fn):
    """Turn a lost connection to the store into StoreUnavailable (one clear line)."""

    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except RetrievalError:
            raise
        except Exception as exc:
            if _looks_like_connection_error(exc):
                raise StoreUnavailable(
                    f"lost the connection to {self.store_description} ({type(exc).__name__}); "
                    "check that the store is running, then retry"
                ) from exc
            raise

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _looks_like_connection_error(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(
        names
        & {
            "ConnectError",
            "ConnectionError",
            "ConnectTimeout",
            "ReadTimeout",
            "RemoteProtocolError",
            "ConnectionRefusedError",
            "ReadError",
        }
    )


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


class KnowledgeBase:
    """One knowledge base: ingest documents into it and query it for cited passages."""

    def __init__(
        self,
        collection,
        settings: KnowledgeBaseSettings,
        embedder: Embedder,
        store_description: str,
        keyword_folder: Path | None = None,
    ):
        self.collection = collection
        self.settings = settings
        self.embedder = embedder
        self.store_description = store_description
        self.keyword_folder = keyword_folder
        """Where the keyword index is saved (embedded stores); None keeps it in memory."""

    @property
    def name(self) -> str:
        return self.collection.name

    @_guard_store
    def ingest(
        self, paths: Sequence[str | Path], *, progress: bool = True, batch_chunks: int = 256
    ) -> IngestReport:
        """Ingest files and folders; unchanged files are skipped, changed ones replaced, vanished
        ones removed. Files that fail to load are listed in the report, the rest still ingest.
        When the chunks change, the relevance floors in use (`min_similarity: auto`) are
        measured again here, so no process pays for them before its first answer.

        Raises:
            UnreadablePath: a given path does not exist.
            StoreUnavailable: the store went away (nothing half-written stays: re-run to finish).
        """
        before = self._revision()
        report = ingest_paths(
            self.collection,
            self.embedder,
            self.settings.chunking,
            [Path(p) for p in paths],
            flush_chunks=batch_chunks,
            progress=progress,
            # Also before the first write: a run killed midway still leaves a new revision, so
            # no saved keyword index is taken for the changed chunks.
            on_change=self._new_revision,
        )
        if report.changed:
            self._new_revision()
        if self.keyword_folder is not None:  # saved now, a new process's first query loads it
            prepare_keyword_index(self.collection, self._revision(), {}, self.keyword_folder)
        if report.changed:  # floors in use are measured now, not before someone's first answer
            for search in FLOORS.searches(str(self.collection.id), before, self.keyword_folder):
                try:
                    options = QueryOptions.model_validate_json(search)
                except ValueError:  # saved by a version with other options: measured on use
                    continue
                self.relevance_floor(options)
        return report

    @_guard_store
    def query(self, text: str, options: QueryOptions | None = None) -> list[Hit]:
        """Return the passages that best answer `text`, each with score and citation.

        Raises:
            InvalidQuery: empty or oversized query, or a bad filter.
        """
        options = self._resolved(options or QueryOptions())
        return search(
            self.collection, self.embedder, text, options, self._revision(), self.keyword_folder
        )

    def _resolved(self, options: QueryOptions) -> QueryOptions:
        if options.min_similarity != "auto":
            return options
        return options.model_copy(update={"min_similarity": self.relevance_floor(options)})

    @_guard_store
    def relevance_floor(self, options: QueryOptions | None = None) -> float | None:
        """The similarity a passage must reach under `min_similarity: auto`: how similar
        unrelated questions look to this knowledge base when searched with `options` (its mode,
        top_k and filters; retrieval/relevance.py). Measured once per revision of the chunks
        and set of options (60 searches), shared by every object of this process that opens
        the knowledge base and saved beside the keyword index (retrieval/floor_cache.py); None
        while no question finds a passage."""
        probe = (options or QueryOptions()).model_copy(
            update={
                "min_similarity": None,
                "min_score": None,
                "context_chars": 0,
                "known_names_only": False,
            }
        )
        revision = self._revision()

        def best(question: str) -> float | None:
            hits = search(
                self.collection, self.embedder, question, probe, revision, self.keyword_folder
            )
            return max((h.similarity for h in hits), default=None)

        return FLOORS.get(
            str(self.collection.id),
            revision,
            probe.model_dump_json(),  # the embedder is the knowledge base's own (checked)
            self.keyword_folder,
            lambda: relevance_floor(best),
        )

    @_guard_store
    def prepare(self, options: QueryOptions | None = None) -> None:
        """Do now what the first query with `options` would: load the embedder and, in hybrid
        mode, bring the keyword index up to date (loaded from the store's folder when saved
        there; built from the chunks otherwise: seconds at 10k chunks, ~25 s at 100k)."""
        options = options or QueryOptions()
        self.embedder.model.get_query_embedding("prepare")
        if options.min_similarity == "auto":
            self.relevance_floor(options)
        if options.mode == "hybrid" and self.collection.count():
            prepare_keyword_index(
                self.collection, self._revision(), options.filters, self.keyword_folder
            )

    @_guard_store
    def chunks(self, file: str | Path | None = None) -> list[StoredChunk]:
        """The stored chunks in document order (by source path, then position), of every file
        or of one: `file` is a file name (every file of that name) or a path.

        Raises:
            FileNotInKnowledgeBase: no chunk comes from `file` (the message lists the files).
        """
        if file is None:
            rows = self._read_chunks(None)
        else:
            name = str(file)
            rows = self._read_chunks({"file_name": name})
            if not rows:
                rows = self._read_chunks({"source": str(Path(name).expanduser().resolve())})
            if not rows:
                names = sorted({str(m.get("file_name", "")) for _, _, m in self._read_chunks(None)})
                raise FileNotInKnowledgeBase(self.name, name, names)
        chunks = [
            StoredChunk(
                id=chunk_id,
                text=text,
                citation=Citation(
                    source=str(meta.get("source", "")),
                    file_name=str(meta.get("file_name", "")),
                    page=int(meta.get("page") or 0) or None,
                    start_char=int(meta.get("start_char", 0)),
                    end_char=int(meta.get("end_char", 0)),
                ),
                chunk_index=int(meta.get("chunk_index", 0)),
                chunk_count=int(meta.get("chunk_count", 0)),
            )
            for chunk_id, text, meta in rows
        ]
        return sorted(chunks, key=lambda c: (c.citation.source, c.chunk_index))

    @_guard_store
    def in_context(self, chunks: Sequence[StoredChunk], context_chars: int) -> list[StoredChunk]:
        """Each chunk as a query with `context_chars` shows it: grown by its file's neighbouring
        chunks on the same page while it stays within `context_chars` (small-to-big, as
        `QueryOptions.context_chars`). Each chunk is widened on its own (none is left out for
        being shown in another's passage); 0 returns them as they are. What training uses to
        lay passages out as an app serves them."""
        if context_chars <= 0 or not chunks:
            return list(chunks)
        found = self.collection.get(ids=[c.id for c in chunks], include=["metadatas"])
        metas = dict(zip(found["ids"], found["metadatas"], strict=True))
        out = []
        for chunk in chunks:
            hit = Hit(chunk.id, 0.0, chunk.text, chunk.citation, dict(metas.get(chunk.id) or {}))
            [wide] = widen(self.collection, [hit], context_chars)
            out.append(dataclasses.replace(chunk, text=wide.text, citation=wide.citation))
        return out

    def _read_chunks(self, where: dict | None) -> list[tuple[str, str, dict]]:
        return list(read_rows(self.collection, where, include=("documents", "metadatas")))

    def _new_revision(self) -> None:
        meta = dict(self.collection.metadata or {})
        meta["revision"] = int(meta.get("revision", 0)) + 1
        meta["updated_at"] = _now()
        self.collection.modify(metadata=meta)

    def _revision(self) -> str:
        """Changes whenever the chunks do (keys the keyword-index cache)."""
        return str((self.collection.metadata or {}).get("revision", 0))

    @_guard_store
    def stats(self) -> KnowledgeBaseStats:
        meta = dict(self.collection.metadata or {})
        sources: set[str] = set()
        pages: set[tuple[str, int]] = set()
        types: dict[str, int] = {}
        total = 0
        for _, _, m in read_rows(self.collection):
            source = str(m.get("source", ""))
            if source not in sources:
                sources.add(source)
                kind = str(m.get("file_type", "?"))
                types[kind] = types.get(kind, 0) + 1
            pages.add((source, int(m.get("page") or 0)))
            total += 1
        return KnowledgeBaseStats(
            name=self.name,
            store=self.store_description,
            chunks=total,
            files=len(sources),
            pages=len(pages),
            embedder=str(meta.get("embedder", "")),
            dimension=int(meta.get("dimension", 0)),
            chunk_size=self.settings.chunking.chunk_size,
            chunk_overlap=self.settings.chunking.chunk_overlap,
            created_at=str(meta.get("created_at", "")),
            updated_at=str(meta.get("updated_at", "")),
            revision=int(meta.get("revision", 0)),
            file_types=types,
        )


class KnowledgeBaseCatalog:
    """The knowledge bases of one store (embedded data directory or Chroma server)."""

    def __init__(self, store: EmbeddedStoreConfig | ServerStoreConfig):
        self.store = store
        self.description = describe(store)
        self.client = connect(store)

    def _keyword_folder(self, collection) -> Path | None:
        """Embedded stores keep each knowledge base's keyword index beside Chroma's files."""
        if isinstance(self.store, EmbeddedStoreConfig):
            return self.store.path.expanduser() / "hybrid-keyword" / str(collection.id)
        return None

    def _ours(self) -> dict[str, object]:
        try:
            collections = self.client.list_collections()
        except Exception as exc:
            raise StoreUnavailable(
                f"cannot list collections of {self.description} ({exc})"
            ) from exc
        return {c.name: c for c in collections if (c.metadata or {}).get(_MARKER)}

    def names(self) -> list[str]:
        return sorted(self._ours())

    def list(self) -> list[KnowledgeBaseInfo]:
        infos = []
        for name, col in sorted(self._ours().items()):
            meta = col.metadata or {}
            infos.append(
                KnowledgeBaseInfo(
                    name=name,
                    chunks=col.count(),
                    embedder=str(meta.get("embedder", "")),
                    created_at=str(meta.get("created_at", "")),
                    updated_at=str(meta.get("updated_at", "")),
                )
            )
        return infos

    def create(self, name: str, settings: KnowledgeBaseSettings | None = None) -> KnowledgeBase:
        """Create an empty knowledge base.

        Raises:
            InvalidKnowledgeBaseName, KnowledgeBaseExists, StoreUnavailable.
        """
        check_kb_name(name)
        settings = settings or KnowledgeBaseSettings()
        if name in self._ours():
            raise KnowledgeBaseExists(name)
        embedder = load_embedder(settings.embedder)
        now = _now()
        existing = [c.name for c in self.client.list_collections()]
        if name in existing:
            raise RetrievalError(
                f"the store already has a collection '{name}' that Hybrid did not create; "
                "pick another knowledge base name"
            )
        collection = self.client.create_collection(
            name,
            metadata={
                _MARKER: _SCHEMA_VERSION,
                "settings": settings.model_dump_json(),
                "embedder": embedder.identity,
                "dimension": embedder.dimension,
                "created_at": now,
                "updated_at": now,
                "revision": 0,
            },
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        return KnowledgeBase(
            collection, settings, embedder, self.description, self._keyword_folder(collection)
        )

    def open(self, name: str, embedder: EmbedderConfig | None = None) -> KnowledgeBase:
        """Open an existing knowledge base with the embedder it was built with.

        Args:
            embedder: override the recorded embedder config (e.g. another device); its model
                must still be the one the knowledge base was built with.
        Raises:
            KnowledgeBaseNotFound (lists the existing ones), EmbedderMismatch, StoreUnavailable.
        """
        ours = self._ours()
        if name not in ours:
            raise KnowledgeBaseNotFound(name, sorted(ours))
        collection = self.client.get_collection(name, embedding_function=None)
        meta = collection.metadata or {}
        recorded_settings = json.loads(str(meta["settings"]))
        # Recorded before chunk boundaries were a setting: those were cut by sentences, and
        # files updated later are cut the same way.
        recorded_settings.get("chunking", {}).setdefault("boundaries", "sentences")
        settings = KnowledgeBaseSettings.model_validate(recorded_settings)
        if embedder is not None:
            settings = settings.model_copy(update={"embedder": embedder})
        loaded = load_embedder(settings.embedder)
        recorded = str(meta.get("embedder", ""))
        if recorded and loaded.identity != recorded:
            raise EmbedderMismatch(
                f"knowledge base '{name}' was built with {recorded} but the embedder configured "
                f"is {loaded.identity}; use the same embedder or re-create the knowledge base"
            )
        return KnowledgeBase(
            collection, settings, loaded, self.description, self._keyword_folder(collection)
        )

    def delete(self, name: str) -> None:
        ours = self._ours()
        if name not in ours:
            raise KnowledgeBaseNotFound(name, sorted(ours))
        folder = self._keyword_folder(ours[name])
        self.client.delete_collection(name)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
