"""A real kill -9 half-way through ingestion, then a re-run: exactly the chunks of a clean run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybrid.cli import main
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from tests.helpers.documents import write_corpus
from tests.helpers.reliability import record

pytestmark = pytest.mark.slow

HYBRID = [sys.executable, "-m", "hybrid.cli"]


def hybrid(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HYBRID, "--data-dir", str(data_dir), *args], capture_output=True, text=True, timeout=600
    )


def snapshot(data_dir: Path, name: str) -> dict[str, tuple]:
    """Every chunk as (text, metadata without the ingestion timestamp)."""
    kb = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=data_dir)).open(name)
    rows = kb.collection.get(include=["documents", "metadatas"])
    out = {}
    for chunk_id, text, meta in zip(rows["ids"], rows["documents"], rows["metadatas"], strict=True):
        meta = {k: v for k, v in meta.items() if k not in ("ingested_at", "_node_content")}
        out[chunk_id] = (text, tuple(sorted(meta.items())))
    return out


def change_corpus(docs: Path) -> None:
    """Edit 10 files, delete 4 and add 6: an update that replaces, removes and adds chunks."""
    for i in range(10):
        path = docs / f"doc-{i:03d}.md"
        path.write_text(path.read_text() + f"\nRevision note {i}: the figures were restated.\n")
    for i in range(36, 40):
        (docs / f"doc-{i:03d}.md").unlink()
    extra = write_corpus(docs / "new", n_files=6, paragraphs_per_file=8)
    for path in extra:
        path.write_text(path.read_text().replace("Document", "Appendix"))


def by_version(chunks: dict[str, tuple]) -> dict[tuple[str, str], set[str]]:
    """Chunk ids grouped by (source, file hash): one group per stored file version."""
    groups: dict[tuple[str, str], set[str]] = {}
    for chunk_id, (_text, meta) in chunks.items():
        meta = dict(meta)
        groups.setdefault((meta["source"], meta["file_hash"]), set()).add(chunk_id)
    return groups


def broken_files(state, old_versions, new_versions) -> list[str]:
    """Files left without one complete version (old or new) though the update keeps them, or
    half-written: the previous good state must stay readable whatever the kill interrupted."""
    stored = by_version(state)
    broken = []
    for source in {s for s, _ in old_versions} | {s for s, _ in new_versions}:
        versions = {h: ids for (s, h), ids in stored.items() if s == source}
        complete = any(
            ids in (old_versions.get((source, h)), new_versions.get((source, h)))
            for h, ids in versions.items()
        )
        kept_before = any(s == source for s, _ in old_versions)
        if (versions and not complete) or (
            not versions and kept_before and any(s == source for s, _ in new_versions)
        ):
            broken.append(source)
    return broken


def kill_during_ingestion(data_dir: Path, docs: Path, rng: random.Random) -> bool:
    """Start an ingestion and kill -9 it after a random number of committed batches plus a
    random delay; False when it finished first."""
    proc = subprocess.Popen(
        [
            *HYBRID,
            "--debug",
            "--data-dir",
            str(data_dir),
            "kb",
            "ingest",
            "killme",
            str(docs),
            "-q",
            "--batch-chunks",
            "8",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    wanted, commits = rng.randint(1, 3), 0
    deadline = time.monotonic() + 300
    while commits < wanted and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        commits += "committed" in line
    time.sleep(rng.uniform(0, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


@pytest.mark.reliability
def test_killed_ingestion_resumes_to_exactly_a_clean_run(tmp_path):
    """kill -9 at random points of a first ingestion and then of an update (files edited,
    deleted, added), repeatedly: after every kill the knowledge base opens and answers, each
    file still has one complete version (the previous or the new one), nothing else is stored;
    the re-run ends with exactly the chunks of a clean run."""
    rng = random.Random(7)
    docs = tmp_path / "docs"
    write_corpus(docs, n_files=40, paragraphs_per_file=8)
    create = ("kb", "create", "killme", "--chunk-size", "32", "--chunk-overlap", "4")

    def clean_run(data_dir: Path) -> dict[str, tuple]:
        """The reference: the same commands, never killed, in this process (a `hybrid`
        subprocess costs its start-up; the runs under test stay subprocesses)."""
        assert main(["--data-dir", str(data_dir), *create]) == 0
        assert main(["--data-dir", str(data_dir), "kb", "ingest", "killme", str(docs), "-q"]) == 0
        return snapshot(data_dir, "killme")

    killed_dir = tmp_path / "killed"
    assert main(["--data-dir", str(killed_dir), *create]) == 0
    assert kill_during_ingestion(killed_dir, docs, rng), "ingestion finished before the kill"
    partial = snapshot(killed_dir, "killme")
    clean_old = clean_run(tmp_path / "clean-old")
    assert len(clean_old) > 200 and 0 < len(partial) < len(clean_old)
    assert all(clean_old.get(cid) == chunk for cid, chunk in partial.items())
    resumed = hybrid("kb", "ingest", "killme", str(docs), "-q", data_dir=killed_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(killed_dir, "killme") == clean_old

    change_corpus(docs)
    clean_new = clean_run(tmp_path / "clean-new")
    old_versions, new_versions = by_version(clean_old), by_version(clean_new)
    kills, checked = 0, 0
    for _round in range(4):
        kills += kill_during_ingestion(killed_dir, docs, rng)
        state = snapshot(killed_dir, "killme")
        checked += len(state)
        strays = [
            cid
            for cid, chunk in state.items()
            if chunk not in (clean_old.get(cid), clean_new.get(cid))
        ]
        assert strays == [], "chunks that belong to neither the old nor the new files"
        assert broken_files(state, old_versions, new_versions) == []
        kb = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=killed_dir)).open("killme")
        assert kb.query("revision note figures restated")
    assert kills >= 2, "the update finished before most kills: nothing was tested"

    resumed = hybrid("kb", "ingest", "killme", str(docs), "-q", data_dir=killed_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(killed_dir, "killme") == clean_new
    again = hybrid("kb", "ingest", "killme", str(docs), "-q", data_dir=killed_dir)
    assert "+0 / -0 chunks" in again.stdout
    record(
        "Faults",
        "Knowledge base: kill -9 at random points of ingestion and update, then re-run",
        kills=kills + 1,
        chunks_checked_after_kills=checked + len(partial),
        stray_or_half_files=0,
        lost_after_rerun=0,
    )
