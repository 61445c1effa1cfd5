"""Incremental, idempotent, crash-safe ingestion of files into one knowledge base collection.

Invariants that make a re-run after a kill end exactly like a clean run:
- chunk ids are derived from (source path, file content hash, chunk index), so the same file
  always yields the same ids;
- every chunk records how many chunks its file version has (`chunk_count`), so a file whose
  chunks were only partly written is seen as incomplete and written again;
- a file's old chunks are removed only after its new version is completely written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from llama_index.core.schema import MetadataMode, TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore
from tqdm.auto import tqdm

from retrieval.chunking import Chunk, chunk_document, hide_bookkeeping
from retrieval.config import ChunkingConfig
from retrieval.embedders import Embedder
from retrieval.errors import DocumentLoadError, UnreadablePath
from retrieval.loaders import Page, available_extensions, check_size, load_document
from retrieval.stores import read_rows

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one ingestion run did."""

    files_seen: int = 0
    files_added: int = 0
    files_updated: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    files_skipped_unsupported: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    failures: list[DocumentLoadError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.chunks_added or self.chunks_removed)

    def summary(self) -> str:
        text = (
            f"{self.files_seen} files: {self.files_added} added, {self.files_updated} updated, "
            f"{self.files_unchanged} unchanged, {self.files_removed} removed; "
            f"+{self.chunks_added} / -{self.chunks_removed} chunks in {self.seconds:.1f}s"
        )
        if self.failures:
            text += f"; {len(self.failures)} failed"
        return text


@dataclass
class _StoredFile:
    """The chunks one source path has in the store, grouped by file version."""

    ids_by_hash: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    expected_by_hash: dict[str, int] = field(default_factory=dict)

    def complete(self, file_hash: str) -> bool:
        ids = self.ids_by_hash.get(file_hash, set())
        return bool(ids) and len(ids) == self.expected_by_hash.get(file_hash, -1)

    def all_ids(self) -> set[str]:
        return set().union(*self.ids_by_hash.values()) if self.ids_by_hash else set()


@dataclass
class _PendingFile:
    path: Path
    file_hash: str
    chunks: list[Chunk]
    stored: _StoredFile
    is_update: bool
    furniture: dict[int | None, dict[str, str]] = field(default_factory=dict)
    """By page: the running header and footer taken off it, as chunk metadata."""


def chunk_id(source: str, file_hash: str, index: int) -> str:
    return hashlib.sha256(f"{source}\0{file_hash}\0{index}".encode()).hexdigest()[:40]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discover_files(paths: Sequence[Path]) -> tuple[list[Path], list[Path], int]:
    """Expand files and folders (recursively, hidden entries skipped).

    Returns (files to ingest, folder roots whose vanished files must be removed, unsupported count).
    Raises:
        UnreadablePath: a given path does not exist.
    """
    supported = set(available_extensions())
    files: list[Path] = []
    roots: list[Path] = []
    unsupported = 0
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise UnreadablePath(f"path not found: {given}; give an existing file or folder")
        path = path.resolve()
        if path.is_file():
            files.append(path)
            roots.append(path)
            continue
        if not os.access(path, os.R_OK | os.X_OK):
            raise UnreadablePath(f"folder not readable: {given}; check its permissions")
        roots.append(path)
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                candidate = Path(dirpath) / name
                if candidate.suffix.lower() in supported:
                    files.append(candidate)
                else:
                    unsupported += 1
    return sorted(set(files)), roots, unsupported


def read_stored_state(collection) -> dict[str, _StoredFile]:
    """Map each source path in the collection to its stored chunk ids per file version."""
    state: dict[str, _StoredFile] = defaultdict(_StoredFile)
    for chunk_key, _, meta in read_rows(collection):
        stored = state[str(meta.get("source", ""))]
        file_hash = str(meta.get("file_hash", ""))
        stored.ids_by_hash[file_hash].add(chunk_key)
        stored.expected_by_hash[file_hash] = int(meta.get("chunk_count", -1))
    return state


def _under(path: str, roots: Iterable[Path]) -> bool:
    return any(path == str(root) or path.startswith(str(root) + os.sep) for root in roots)


def ingest_paths(
    collection,
    embedder: Embedder,
    chunking: ChunkingConfig,
    paths: Sequence[Path],
    *,
    flush_chunks: int = 256,
    progress: bool = True,
    on_change: Callable[[], None] | None = None,
) -> IngestReport:
    """Bring the collection in line with the files under `paths`.

    Unchanged files cost a hash and no embedding; changed files are re-chunked and replaced;
    files that vanished from a given folder lose their chunks. A file that fails to load is
    reported and skipped, and its chunks from an earlier run are left as they were.
    `on_change` is called once, before the first chunk is written or deleted (a run killed
    after that has changed the collection, whatever it reported).
    """
    started = time.perf_counter()
    report = IngestReport()
    files, roots, report.files_skipped_unsupported = discover_files(paths)
    report.files_seen = len(files)
    stored = read_stored_state(collection)
    vector_store = ChromaVectorStore(chroma_collection=collection)
    ingested_at = datetime.now(UTC).isoformat(timespec="seconds")
    changing = _Once(on_change)

    pending: list[_PendingFile] = []
    bar = tqdm(files, desc="ingest", unit="file", disable=not progress, leave=False)
    for path in bar:
        source = str(path)
        try:
            check_size(path)  # before hashing: a stray multi-GB dump is refused at once
            file_hash = file_sha256(path)
        except DocumentLoadError as exc:
            report.failures.append(exc)
            continue
        except OSError as exc:
            report.failures.append(DocumentLoadError(source, f"cannot read file ({exc.strerror})"))
            continue
        existing = stored.get(source, _StoredFile())
        if existing.complete(file_hash):
            stale = existing.all_ids() - existing.ids_by_hash[file_hash]
            if stale:  # an earlier run was killed after writing the new version
                changing()
                collection.delete(ids=sorted(stale))
                report.chunks_removed += len(stale)
            report.files_unchanged += 1
            continue
        try:
            pages = load_document(path)
            chunks = chunk_document(pages, chunking, embedder.tokenize)
        except DocumentLoadError as exc:
            log.info("skipped %s", exc)
            report.failures.append(exc)
            continue
        pending.append(
            _PendingFile(
                path,
                file_hash,
                chunks,
                existing,
                is_update=bool(existing.all_ids()),
                furniture={page.page: _furniture(page) for page in pages},
            )
        )
        if sum(len(p.chunks) for p in pending) >= flush_chunks:
            _write(
                collection, vector_store, embedder, pending, ingested_at, report, progress, changing
            )
            pending = []
    if pending:
        _write(collection, vector_store, embedder, pending, ingested_at, report, progress, changing)

    present = {str(f) for f in files}
    vanished = [s for s in stored if s not in present and _under(s, roots)]
    for source in vanished:
        ids = stored[source].all_ids()
        changing()
        collection.delete(ids=sorted(ids))
        report.chunks_removed += len(ids)
        report.files_removed += 1
    report.seconds = time.perf_counter() - started
    return report


def _furniture(page: Page) -> dict[str, str]:
    """The page's running header and footer as chunk metadata (absent when none): kept for
    citations ("Page 7 of 18") and filters, hidden from embedding and keyword search like all
    bookkeeping (`chunking.hide_bookkeeping`)."""
    found = {"running_header": page.running_header, "running_footer": page.running_footer}
    return {key: value for key, value in found.items() if value}


class _Once:
    def __init__(self, fn: Callable[[], None] | None):
        self.fn = fn

    def __call__(self) -> None:
        if self.fn is not None:
            fn, self.fn = self.fn, None
            fn()


def _write(
    collection, vector_store, embedder, pending, ingested_at, report, progress, changing
) -> None:
    """Embed and store the chunks of several files at once, then drop their old versions.
    `changing()` runs before the first write or delete (none when all was written meanwhile)."""
    nodes: list[TextNode] = []
    for item in pending:
        source = str(item.path)
        for index, chunk in enumerate(item.chunks):
            nodes.append(
                hide_bookkeeping(
                    TextNode(
                        id_=chunk_id(source, item.file_hash, index),
                        text=chunk.text,
                        metadata={
                            "source": source,
                            "file_name": item.path.name,
                            "file_type": item.path.suffix.lower().lstrip("."),
                            "page": chunk.page if chunk.page is not None else 0,
                            "start_char": chunk.start_char,
                            "end_char": chunk.end_char,
                            "content_hash": chunk.content_hash,
                            "file_hash": item.file_hash,
                            "chunk_index": index,
                            "chunk_count": len(item.chunks),
                            "ingested_at": ingested_at,
                            **item.furniture.get(chunk.page, {}),
                        },
                    )
                )
            )
    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    embeddings: list[list[float]] = []
    batch = embedder.model.embed_batch_size
    with tqdm(
        total=len(texts), desc="embed", unit="chunk", disable=not progress, leave=False
    ) as bar:
        for start in range(0, len(texts), batch):
            embeddings.extend(embedder.model.get_text_embedding_batch(texts[start : start + batch]))
            bar.update(min(batch, len(texts) - start))
    for node, vector in zip(nodes, embeddings, strict=True):
        node.embedding = vector

    # Leftovers of a half-written earlier attempt share ids with the new chunks: drop them first
    # so that `add` (which ignores existing ids) stores exactly the new version.
    new_ids = {node.node_id for node in nodes}
    ours = set().union(*(p.stored.all_ids() for p in pending))
    leftovers = sorted(new_ids & ours)
    if leftovers:
        changing()
        collection.delete(ids=leftovers)
    # Chunks another ingest of this knowledge base stored since we read the state (two runs at
    # once): the same ids hold the same text, so they are not written or counted again.
    written_meanwhile = (
        set(collection.get(ids=sorted(new_ids), include=[])["ids"]) - ours if new_ids else set()
    )
    fresh = [node for node in nodes if node.node_id not in written_meanwhile]
    if fresh:
        changing()
        vector_store.add(fresh)
    for item in pending:
        source = str(item.path)
        added = sum(
            chunk_id(source, item.file_hash, i) not in written_meanwhile
            for i in range(len(item.chunks))
        )
        old = item.stored.all_ids() - new_ids
        if old:
            changing()
            collection.delete(ids=sorted(old))
        report.chunks_removed += len(old)
        report.chunks_added += added
        if not added and item.chunks:
            report.files_unchanged += 1
        elif item.is_update:
            report.files_updated += 1
        else:
            report.files_added += 1
        log.info("stored %s (%d of %d chunks)", item.path.name, added, len(item.chunks))
    log.info("committed %d chunks from %d files", len(fresh), len(pending))
