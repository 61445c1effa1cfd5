"""Relevance floors (`min_similarity: auto`) measured once per knowledge base revision and way
of searching, shared by every `KnowledgeBase` object of the process and saved with the keyword
index.

A floor costs 60 searches (retrieval/relevance.py): about 1.5 s at 100k chunks in hybrid mode,
more than the 1 s a fresh process may take for its first answer (bench/first_query.py). Two apps
over one knowledge base each open it (`KnowledgeBaseCatalog.open`), and every new process used
to measure it again. Here a floor is kept in memory by (collection, revision, search), so one
process measures it once whatever opens the knowledge base, and, for embedded stores, saved as
`floors.json` in the knowledge base's keyword-index folder, so a new process reads it. Floors of
an older revision are dropped; an unreadable file is ignored (measured again, never trusted).
Ingestion that changes the chunks measures the floors in use again (`KnowledgeBase.ingest`), so
the first process after it reads them too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from retrieval.relevance import FLOOR_QUANTILE, OFF_TOPIC_QUESTIONS

log = logging.getLogger(__name__)

FILE = "floors.json"
_FORMAT = 1
RECIPE = hashlib.sha256(
    json.dumps([FLOOR_QUANTILE, list(OFF_TOPIC_QUESTIONS)]).encode()
).hexdigest()[:12]
"""Changes when the questions or the quantile do: floors saved under another recipe are not used."""

Measure = Callable[[], float | None]


class FloorCache:
    """Measured floors by (collection id, revision, search key); thread-safe. A floor being
    measured by one thread is waited for by the others that need the same one."""

    def __init__(self, size: int = 64):
        self.size = size
        self.entries: OrderedDict[tuple[str, str, str], float | None] = OrderedDict()
        self.lock = threading.Lock()
        self.measuring: dict[tuple[str, str, str], threading.Lock] = {}
        self.measured = 0
        """How many floors this process measured (the rest came from memory or a saved file)."""

    def get(
        self,
        collection_id: str,
        revision: str,
        search_key: str,
        folder: Path | None,
        measure: Measure,
    ) -> float | None:
        """The floor for `search_key` at `revision`: remembered, else read from `folder`'s
        saved floors, else `measure()`d (then remembered and saved)."""
        key = (collection_id, revision, f"{RECIPE}:{search_key}")
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
            gate = self.measuring.setdefault(key, threading.Lock())
        with gate:
            with self.lock:
                if key in self.entries:
                    return self.entries[key]
            saved = _read(folder, revision)
            if key[2] in saved:
                floor = saved[key[2]]
            else:
                floor = measure()
                with self.lock:
                    self.measured += 1
                _write(folder, revision, {**saved, key[2]: floor})
            with self.lock:
                self.entries[key] = floor
                while len(self.entries) > self.size:
                    self.entries.popitem(last=False)
                self.measuring.pop(key, None)
            return floor

    def searches(self, collection_id: str, revision: str, folder: Path | None) -> list[str]:
        """The search keys with a floor at `revision` (remembered or saved, this recipe's):
        what ingestion measures again for the next revision."""
        prefix = f"{RECIPE}:"
        with self.lock:
            keys = {k[2] for k in self.entries if k[:2] == (collection_id, revision)}
        keys |= set(_read(folder, revision))
        return sorted(k.removeprefix(prefix) for k in keys if k.startswith(prefix))

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


def _read(folder: Path | None, revision: str) -> dict[str, float | None]:
    if folder is None:
        return {}
    try:
        saved = json.loads((folder / FILE).read_text(encoding="utf-8"))
        if saved.get("format") != _FORMAT or str(saved.get("revision")) != revision:
            return {}
        floors = saved["floors"]
        return {
            str(k): (None if v is None else float(v))
            for k, v in floors.items()
            if v is None or isinstance(v, int | float)
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("saved relevance floors in %s unreadable (%s); measuring again", folder, exc)
        return {}


def _write(folder: Path | None, revision: str, floors: dict[str, float | None]) -> None:
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{FILE}.{uuid.uuid4().hex[:12]}.tmp"
        payload = {"format": _FORMAT, "revision": revision, "floors": floors}
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(tmp, folder / FILE)  # readers see the old or the new, whole
    except OSError as exc:  # a read-only or full disk costs start-up time, not answers
        log.warning("could not save the relevance floors in %s (%s)", folder, exc)


FLOORS = FloorCache()
