"""First hybrid query in a fresh process: how long a new process waits before its first answer.

    .venv/bin/python -m bench.first_query      # 20k and 100k chunks: about 6 minutes on 2 cores

A knowledge base of N chunks (synthetic text, random unit vectors written straight to the store:
embedding 100k chunks on 2 cores would take over an hour) is built once; then fresh Python processes
open it, load the embedder, and time their first and second hybrid queries (default options:
each hit widened to 400 characters). The first process finds no saved keyword index (like a
knowledge base ingested before indexes were saved), builds and saves it; the next `--runs` load
it. Then the same with `min_similarity: auto` (the apps' default): the first process finds no
saved relevance floor, measures it (60 searches) and saves it; the next `--runs` read it. Measured before the index was saved at all (commit
e437814, same machine): 24.9 s at 100k chunks, 6.0 s at 20k, in every new process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.common import machine, markdown_table, write_results

CHILD = """
import json, sys, time
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog, QueryOptions
kb = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=sys.argv[1])).open("first-query")
kb.embedder.model.get_query_embedding("warm up")
options = QueryOptions(mode="hybrid", top_k=5, min_similarity=sys.argv[2] or None)
t0 = time.perf_counter(); kb.query("calibration warranty for the Atlas X2 in region B7", options)
t1 = time.perf_counter(); kb.query("battery shipping for Vega Arm units", options)
t2 = time.perf_counter()
print(json.dumps({"first_s": t1 - t0, "second_s": t2 - t1}))
"""


def build(root: Path, chunks: int) -> None:
    import numpy as np
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from bench.retrieval_bench import synthetic_paragraph
    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
    from retrieval.chunking import hide_bookkeeping
    from retrieval.ingest import chunk_id

    rng = random.Random(7)
    nprng = np.random.default_rng(7)
    offset = 0
    kb = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root)).create("first-query")
    store = ChromaVectorStore(chroma_collection=kb.collection)
    batch = 2000
    for start in range(0, chunks, batch):
        vectors = nprng.normal(size=(min(batch, chunks - start), kb.embedder.dimension))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        nodes = []
        for offset, vector in enumerate(vectors):
            i = start + offset
            text = f"{synthetic_paragraph(rng)} Unit code u{i:06d}."
            offset = 0 if i % 4 == 0 else offset
            node = TextNode(
                # Ids, spans and counts as ingestion makes them: widening reads the neighbours.
                id_=chunk_id(f"/docs/file-{i // 4:06d}.md", f"h{i // 4}", i % 4),
                text=text,
                metadata={
                    "source": f"/docs/file-{i // 4:06d}.md",
                    "file_name": f"file-{i // 4:06d}.md",
                    "file_type": "md",
                    "page": 0,
                    "start_char": offset,
                    "end_char": offset + len(text),
                    "content_hash": "",
                    "file_hash": f"h{i // 4}",
                    "chunk_index": i % 4,
                    "chunk_count": 4,
                    "ingested_at": "2026-11-30T00:00:00+00:00",
                },
                embedding=vector.tolist(),
            )
            nodes.append(hide_bookkeeping(node))
            offset += len(text) + 2
        store.add(nodes)
    meta = dict(kb.collection.metadata or {})
    meta["revision"] = 1
    kb.collection.modify(metadata=meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--runs", type=int, default=3, help="Processes with the saved index.")
    parser.add_argument("--store", type=Path, help="Keep the stores under this folder.")
    args = parser.parse_args()
    base = args.store or Path(tempfile.mkdtemp(prefix="hybrid-first-query-"))
    rows, results = [], []
    for chunks in args.chunks:
        root = base / f"{chunks}"
        if not (root / "chroma.sqlite3").exists():
            started = time.perf_counter()
            build(root, chunks)
            print(f"built {chunks} chunks in {time.perf_counter() - started:.0f}s at {root}")
        shutil.rmtree(root / "hybrid-keyword", ignore_errors=True)  # as ingested before it
        runs = [child(root) for _ in range(args.runs + 1)]
        saved = [r["first_s"] for r in runs[1:]]
        # min_similarity auto (the apps' default): the first process after a change measures
        # the relevance floor (60 searches) and saves it; the next ones read it.
        for floors in (root / "hybrid-keyword").glob("*/floors.json"):
            floors.unlink()
        auto = [child(root, "auto") for _ in range(args.runs + 1)]
        result = {
            "chunks": chunks,
            "first_query_without_saved_index_s": round(runs[0]["first_s"], 3),
            "first_query_with_saved_index_s": [round(s, 3) for s in saved],
            "first_query_with_saved_index_median_s": round(statistics.median(saved), 3),
            "second_query_s": [round(r["second_s"], 3) for r in runs],
            "auto_first_query_measuring_floor_s": round(auto[0]["first_s"], 3),
            "auto_first_query_saved_floor_s": [round(r["first_s"], 3) for r in auto[1:]],
            "auto_first_query_saved_floor_median_s": round(
                statistics.median(r["first_s"] for r in auto[1:]), 3
            ),
        }
        results.append(result)
        rows.append(
            [
                chunks,
                result["first_query_without_saved_index_s"],
                result["first_query_with_saved_index_median_s"],
                round(statistics.median(result["second_query_s"]), 3),
                result["auto_first_query_measuring_floor_s"],
                result["auto_first_query_saved_floor_median_s"],
            ]
        )
        print(json.dumps(result))
    table = markdown_table(
        [
            "chunks",
            "first hybrid query, no saved keyword index (builds, saves) s",
            "first hybrid query, saved index s (median)",
            "second query s",
            "min_similarity auto: first query, floor not saved (measures, saves) s",
            "min_similarity auto: first query, saved floor s (median)",
        ],
        rows,
    )
    write_results("first_query", {"machine": machine(), "results": results}, table)
    print(table)
    if args.store is None:
        shutil.rmtree(base, ignore_errors=True)


def child(root: Path, min_similarity: str = "") -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), min_similarity],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
