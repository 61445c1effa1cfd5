"""The BM25 keyword index of one knowledge base, kept in step with its collection.

It is derived data: the chunks in Chroma are the truth, and the index records the collection
state it reflects (revision and chunk count). When they differ it is brought up to date by a
diff: only chunks added since are read and tokenized, removed ones are dropped, and the BM25
scores are recomputed from the kept tokens (IDF and lengths change with every chunk). With a
folder (embedded stores) it is saved there after each update, so a new process loads it instead
of reading and tokenizing every chunk (first hybrid query at 100k chunks: 24.9 s -> 0.34 s,
bench/first_query.py). A missing, stale or unreadable saved index is rebuilt, never trusted.

Tokenization and scoring are bm25s's with the settings LlamaIndex's BM25Retriever uses (English
stopwords and stemmer, word tokens of 2+ characters), so rankings match it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from llama_index.core.schema import MetadataMode, NodeWithScore
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from retrieval.chunking import hide_bookkeeping
from retrieval.floor_cache import FILE as FLOORS_FILE
from retrieval.stores import read_rows

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

_FORMAT = 1
_STATE = "state.json"
_ID_BATCH = 500  # ids per `get(ids=...)`
_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_STEMMER = Stemmer.Stemmer("english")


def tokenize(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(
        texts,
        stopwords="en",
        stemmer=_STEMMER,
        token_pattern=_TOKEN_PATTERN,
        return_ids=False,
        show_progress=False,
    )


def read_ids(collection, where: dict | None = None) -> list[str]:
    """Every chunk id of the collection (matching `where`), page by page."""
    return [row[0] for row in read_rows(collection, where, include=())]


def _read_nodes(collection, ids: list[str]) -> dict:
    nodes = {}
    for start in range(0, len(ids), _ID_BATCH):
        page = collection.get(
            ids=ids[start : start + _ID_BATCH], include=["documents", "metadatas"]
        )
        for chunk_id, text, meta in zip(
            page["ids"], page["documents"], page["metadatas"], strict=True
        ):
            nodes[chunk_id] = hide_bookkeeping(metadata_dict_to_node(meta or {}, text=text))
    return nodes


class KeywordIndex:
    """BM25 over one collection's chunks. Thread-safe; `folder` None keeps it in memory only."""

    def __init__(self, collection, folder: Path | None):
        self.collection = collection
        self.folder = folder
        self.lock = threading.Lock()
        self.state: tuple[str, int] | None = None  # (revision, chunk count) reflected
        self.ids = np.array([], dtype=str)
        self.tokens: list[np.ndarray] | None = None  # per chunk, ids into self.vocab
        self.vocab: list[str] = []
        self.bm25: bm25s.BM25 | None = None
        self.masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.loaded_from_disk = False

    # -- keeping in step -------------------------------------------------------------------

    def sync(self, revision: str, count: int | None = None) -> None:
        """Bring the index in line with the collection (cheap when it already is); `count`: the
        collection's chunk count when the caller just read it (counting costs a scan)."""
        with self.lock:
            current = (revision, self.collection.count() if count is None else count)
            if self.state == current:
                return
            if self.state is None and self._load(current):
                return
            started = time.perf_counter()
            self._update(current)
            log.info(
                "keyword index of %s: %d chunks in %.2fs",
                self.collection.name,
                len(self.ids),
                time.perf_counter() - started,
            )
            self._save()

    def _update(self, current: tuple[str, int]) -> None:
        if self.tokens is None and self.state is not None:
            self._load_tokens()
        if self.tokens is None:  # nothing usable: start from an empty index
            self.ids, self.tokens, self.vocab = np.array([], dtype=str), [], []
        present = read_ids(self.collection)
        present_set = set(present)
        keep = [i for i, chunk_id in enumerate(self.ids.tolist()) if chunk_id in present_set]
        known = set(self.ids.tolist())
        added = [chunk_id for chunk_id in present if chunk_id not in known]
        nodes = _read_nodes(self.collection, added)
        added = [chunk_id for chunk_id in added if chunk_id in nodes]  # deleted meanwhile
        new_tokens = tokenize([nodes[c].get_content(MetadataMode.EMBED) for c in added])
        lookup = {word: i for i, word in enumerate(self.vocab)}
        encoded = []
        for words in new_tokens:
            for word in words:
                if word not in lookup:
                    lookup[word] = len(self.vocab)
                    self.vocab.append(word)
            encoded.append(np.array([lookup[w] for w in words], dtype=np.int32))
        self.tokens = [self.tokens[i] for i in keep] + encoded
        self.ids = np.array([self.ids[i] for i in keep] + added, dtype=str)
        self.bm25 = self._score()
        self.state = current
        self.masks.clear()

    def _score(self) -> bm25s.BM25 | None:
        # Keep only the words still used (bm25s sizes its matrices by the vocabulary, and
        # removed chunks must not leave their words behind).
        used = np.unique(np.concatenate(self.tokens)) if self.tokens else np.array([], int)
        remap = np.full(len(self.vocab), -1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        self.vocab = [self.vocab[int(old)] for old in used]
        self.tokens = [remap[doc] for doc in self.tokens]
        if not self.vocab:  # no chunk (or none with a word of 2+ letters that is not a stopword)
            return None
        bm25 = bm25s.BM25()
        vocab = {word: i for i, word in enumerate(self.vocab)}
        ids = [doc.tolist() for doc in self.tokens]
        bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
        return bm25

    # -- saving and loading ----------------------------------------------------------------

    def _save(self) -> None:
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            generation = uuid.uuid4().hex[:12]
            flat = np.concatenate(self.tokens) if self.tokens else np.array([], dtype=np.int32)
            offsets = np.cumsum([0] + [len(doc) for doc in self.tokens])
            np.savez(
                self.folder / f"{generation}.tokens.npz",
                ids=self.ids,
                flat=flat.astype(np.int32),
                offsets=offsets.astype(np.int64),
                vocab=np.array(self.vocab, dtype=str),
            )
            if self.bm25 is not None:
                self.bm25.save(str(self.folder / f"{generation}.bm25"))
            state = {
                "format": _FORMAT,
                "revision": self.state[0],
                "count": self.state[1],
                "generation": generation,
                "scored": self.bm25 is not None,
            }
            tmp = self.folder / f"{_STATE}.{generation}.tmp"
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, self.folder / _STATE)  # readers see the old or the new, whole
            self._remove_old(keep=generation)
        except OSError as exc:  # a read-only or full disk costs speed, not answers
            log.warning("could not save the keyword index in %s (%s)", self.folder, exc)

    def _remove_old(self, keep: str) -> None:
        """Drop generations other than `keep` that are over a minute old (a concurrent reader
        may still be opening a recent one)."""
        cutoff = time.time() - 60
        for path in self.folder.iterdir():
            generation = path.name.split(".", 1)[0]
            if (
                generation in (keep, _STATE.split(".")[0])
                or path.name == FLOORS_FILE
                or path.stat().st_mtime > cutoff
            ):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _saved_state(self) -> dict | None:
        if self.folder is None:
            return None
        try:
            state = json.loads((self.folder / _STATE).read_text(encoding="utf-8"))
            return state if state.get("format") == _FORMAT else None
        except (OSError, ValueError, AttributeError):
            return None

    def _load(self, current: tuple[str, int]) -> bool:
        """Load the saved index when it reflects `current`; else remember that a saved one
        exists (its tokens seed the update)."""
        state = self._saved_state()
        if state is None:
            return False
        generation = state["generation"]
        try:
            with np.load(self.folder / f"{generation}.tokens.npz") as saved:
                ids = saved["ids"]
            if (str(state["revision"]), int(state["count"])) != current or len(ids) != current[1]:
                self.state = (str(state["revision"]), int(state["count"]))
                return False
            scores = str(self.folder / f"{generation}.bm25")
            self.bm25 = bm25s.BM25.load(scores, mmap=True) if state["scored"] else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("keyword index in %s unreadable (%s); rebuilding it", self.folder, exc)
            self.state = None
            return False
        self.ids, self.tokens, self.state = ids, None, current
        self.masks.clear()
        self.loaded_from_disk = True
        return True

    def _load_tokens(self) -> None:
        state = self._saved_state()
        try:
            with np.load(self.folder / f"{state['generation']}.tokens.npz") as saved:
                flat, offsets = saved["flat"], saved["offsets"]
                self.ids = saved["ids"]
                self.vocab = saved["vocab"].tolist()
            self.tokens = [flat[offsets[i] : offsets[i + 1]] for i in range(len(self.ids))]
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("keyword index in %s unreadable (%s); rebuilding it", self.folder, exc)
            self.tokens = None

    # -- searching -------------------------------------------------------------------------

    def mask(self, filters: dict, ids: np.ndarray) -> np.ndarray | None:
        """1 for the chunks (`ids`, in index order) matching the exact-match `filters`, else 0
        (None: no filters)."""
        if not filters:
            return None
        key = (id(ids), tuple(sorted(filters.items())))
        with self.lock:
            if key in self.masks:
                return self.masks[key]
        clauses = [{k: v} for k, v in sorted(filters.items())]
        where = clauses[0] if len(clauses) == 1 else {"$and": clauses}
        matching = read_ids(self.collection, where)
        weights = np.isin(ids, np.array(matching, dtype=str)).astype(np.float32)
        with self.lock:
            self.masks[key] = weights
            while len(self.masks) > 8:
                self.masks.popitem(last=False)
        return weights

    def unknown(self, words: list[str]) -> list[str]:
        """The `words` no chunk contains (each tokenized as the index does: "Apple's" is
        "appl"); a word the index never keeps (a stopword, one letter) counts as known. Call
        `sync` first."""
        with self.lock:
            bm25 = self.bm25
        vocabulary = bm25.vocab_dict if bm25 is not None else {}
        return [
            word
            for word, tokens in zip(words, tokenize(words), strict=True)
            if tokens and not any(token in vocabulary for token in tokens)
        ]

    def search(self, query: str, depth: int, filters: dict) -> list[NodeWithScore] | None:
        """The `depth` best chunks sharing a word with `query` (None: no chunk matches the
        filters). Call `sync` first."""
        with self.lock:
            bm25, ids = self.bm25, self.ids  # a concurrent sync replaces both together
        if not len(ids):
            return None
        weights = self.mask(filters, ids)
        if weights is not None and not weights.any():
            return None
        words = tokenize([query])[0]
        if bm25 is None or not words:  # no indexable word in the chunks, or in the query
            return []
        scores = bm25.get_scores(words, weight_mask=weights)
        depth = min(depth, len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth]
        top = [int(i) for i in top[np.argsort(-scores[top], kind="stable")] if scores[i] > 0]
        chunk_ids = [str(ids[i]) for i in top]
        nodes = _read_nodes(self.collection, chunk_ids)
        return [
            NodeWithScore(node=nodes[c], score=float(scores[i]))
            for c, i in zip(chunk_ids, top, strict=True)
            if c in nodes
        ]


class KeywordIndexes:
    """The keyword indexes open in this process, one per collection (the last few)."""

    def __init__(self, size: int = 8):
        self.size = size
        self.entries: OrderedDict[tuple, KeywordIndex] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, collection, folder: Path | None) -> KeywordIndex:
        key = (str(collection.id), str(folder))
        with self.lock:
            index = self.entries.get(key)
            if index is None:
                index = self.entries[key] = KeywordIndex(collection, folder)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
            index.collection = collection  # a fresh client's handle to the same collection
            return index

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


OPEN = KeywordIndexes()
