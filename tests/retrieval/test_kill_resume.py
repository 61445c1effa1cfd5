"""A real kill -9 half-way through ingestion, then a re-run: exactly the chunks of a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from tests.helpers.documents import write_corpus

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


def test_killed_ingestion_resumes_to_exactly_a_clean_run(tmp_path):
    docs = tmp_path / "docs"
    write_corpus(docs, n_files=40, paragraphs_per_file=8)
    create = ("kb", "create", "killme", "--chunk-size", "32", "--chunk-overlap", "4")

    clean_dir = tmp_path / "clean"
    assert hybrid(*create, data_dir=clean_dir).returncode == 0
    done = hybrid("kb", "ingest", "killme", str(docs), "-q", data_dir=clean_dir)
    assert done.returncode == 0, done.stderr
    clean = snapshot(clean_dir, "killme")
    assert len(clean) > 200

    killed_dir = tmp_path / "killed"
    assert hybrid(*create, data_dir=killed_dir).returncode == 0
    proc = subprocess.Popen(
        [
            *HYBRID,
            "--debug",
            "--data-dir",
            str(killed_dir),
            "kb",
            "ingest",
            "killme",
            str(docs),
            "-q",
            "--batch-chunks",
            "16",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    commits = 0
    deadline = time.monotonic() + 300
    while commits < 3 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        commits += "committed" in line
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "ingestion finished before it could be killed"

    partial = snapshot(killed_dir, "killme")
    assert 0 < len(partial) < len(clean), "the kill should leave a partial knowledge base"

    resumed = hybrid("kb", "ingest", "killme", str(docs), "-q", data_dir=killed_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(killed_dir, "killme") == clean

    again = hybrid("kb", "ingest", "killme", str(docs), "-q", data_dir=killed_dir)
    assert "+0 / -0 chunks" in again.stdout
