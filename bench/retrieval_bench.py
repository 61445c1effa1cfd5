"""Retrieval benchmark: ingestion throughput and query latency at 1k, 10k and 100k chunks,
embedded Chroma vs a Chroma server, in one run.

    .venv/bin/python -m bench.retrieval_bench            # all sizes (about 15 minutes on 2 cores)
    .venv/bin/python -m bench.retrieval_bench --sizes 1000 10000

What is measured:
- end-to-end ingestion (`KnowledgeBase.ingest`: files -> chunks -> MiniLM embeddings -> Chroma),
  chunks/s, on `--e2e-chunks` chunks of synthetic markdown;
- store writes at each size: chunks/s of `ChromaVectorStore.add` with precomputed vectors. MiniLM
  on 2 CPU cores embeds about 25 chunks/s, so embedding 100k distinct chunks would take over an
  hour per store; vectors at 10k/100k are the real MiniLM vectors of the end-to-end chunks, each
  copy moved by small Gaussian noise (and its text given unique words), so the index holds N
  distinct points with a realistic distribution;
- query latency p50/p95 (query embedding included) for vector and hybrid (BM25 + vector, RRF)
  search with the default `QueryOptions` (top 5, each hit widened by its neighbouring chunks
  to 400 characters: the synthetic chunks are 4 consecutive paragraphs per file, with the ids,
  spans and chunk counts ingestion gives them, so widening reads real neighbours); the one-off
  BM25 index build is reported apart.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from llama_index.core.schema import TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore

from bench.common import machine, markdown_table, summary_ms, timer, write_results
from retrieval import (
    EmbeddedStoreConfig,
    KnowledgeBaseCatalog,
    QueryOptions,
    ServerStoreConfig,
)
from retrieval.ingest import chunk_id

TOPICS = [
    "warranty",
    "shipping",
    "refund",
    "battery",
    "firmware",
    "gripper",
    "payload",
    "calibration",
    "safety",
    "maintenance",
    "pricing",
    "installation",
    "sensor",
    "support",
]
PRODUCTS = ["Atlas X2", "Atlas X3", "Hermes Mini", "Hermes Pro", "Orion Dock", "Vega Arm"]
VERBS = ["covers", "requires", "improves", "reduces", "includes", "extends", "limits"]


def synthetic_paragraph(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(4, 7)):
        sentences.append(
            f"The {rng.choice(PRODUCTS)} {rng.choice(VERBS)} {rng.choice(TOPICS)} for "
            f"{rng.randint(2, 480)} {rng.choice(['days', 'hours', 'units', 'kilograms', 'sites'])} "
            f"in region {rng.choice('ABCDEFGH')}{rng.randint(1, 99)}."
        )
    return " ".join(sentences)


def write_documents(folder: Path, target_chunks: int, rng: random.Random) -> None:
    folder.mkdir(parents=True)
    # ~8 paragraphs of ~90 tokens per file; with 200-token chunks that is ~4 chunks a file.
    for i in range(max(1, target_chunks // 4)):
        body = "\n\n".join(synthetic_paragraph(rng) for _ in range(8))
        (folder / f"doc-{i:05d}.md").write_text(f"# Document {i}\n\n{body}\n", encoding="utf-8")


def queries(rng: random.Random, n: int) -> list[str]:
    return [
        f"What does the {rng.choice(PRODUCTS)} say about {rng.choice(TOPICS)}?" for _ in range(n)
    ]


class ChromaServerProcess:
    def __init__(self, root: Path):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        chroma = str(Path(sys.executable).parent / "chroma")
        self.log = open(root / "chroma.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                chroma,
                "run",
                "--path",
                str(root / "server-data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("chroma server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def bench_store(
    label: str,
    catalog: KnowledgeBaseCatalog,
    docs: Path,
    sizes: list[int],
    n_queries: int,
    seed: int,
) -> dict:
    out: dict = {"store": label, "e2e": {}, "sizes": {}}
    kb = catalog.create("bench-e2e")
    with timer() as t:
        report = kb.ingest([docs], progress=False)
    out["e2e"] = {
        "chunks": report.chunks_added,
        "files": report.files_added,
        "seconds": round(t["s"], 2),
        "chunks_per_s": round(report.chunks_added / t["s"], 1),
    }
    print(f"[{label}] end-to-end: {out['e2e']}", flush=True)
    pool = kb.collection.get(include=["embeddings", "documents", "metadatas"])
    pool_vecs = np.asarray(pool["embeddings"], dtype=np.float32)
    pool_docs, pool_meta = pool["documents"], pool["metadatas"]
    rng = np.random.default_rng(seed)
    words = random.Random(seed)
    for size in sizes:
        name = f"bench-{size}"
        kb = catalog.create(name)
        store = ChromaVectorStore(chroma_collection=kb.collection)
        write_s, offset = 0.0, 0
        for start in range(0, size, 1000):
            nodes = []
            for i in range(start, min(size, start + 1000)):
                j = i % len(pool_docs)
                vec = pool_vecs[j] + rng.normal(0, 0.02, pool_vecs.shape[1]).astype(np.float32)
                vec /= np.linalg.norm(vec)
                extra = " ".join(
                    words.choice(TOPICS) + str(words.randint(0, 999)) for _ in range(3)
                )
                text = f"{pool_docs[j]} {extra}"
                if i % 4 == 0:
                    offset = 0
                meta = {k: v for k, v in pool_meta[j].items() if not k.startswith("_")}
                meta.update(
                    source=f"/bench/doc-{i // 4:06d}.md",
                    file_name=f"doc-{i // 4:06d}.md",
                    file_hash=f"h{i // 4}",
                    page=0,
                    start_char=offset,
                    end_char=offset + len(text),
                    chunk_index=i % 4,
                    chunk_count=4,
                )
                offset += len(text) + 2  # the next paragraph of the same file
                nodes.append(
                    TextNode(
                        # Ids as ingestion makes them, so widening finds the neighbours.
                        id_=chunk_id(meta["source"], meta["file_hash"], i % 4),
                        text=text,
                        metadata=meta,
                        embedding=vec.tolist(),
                    )
                )
            with timer() as t:
                store.add(nodes)
            write_s += t["s"]
        kb.collection.modify(metadata={**(kb.collection.metadata or {}), "revision": 1})
        kb = catalog.open(name)
        qs = queries(random.Random(seed + size), n_queries + 3)
        result = {
            "chunks": kb.collection.count(),
            "write_s": round(write_s, 2),
            "write_chunks_per_s": round(size / write_s, 1),
        }
        # First queries of both modes before any timing (the first hybrid query builds the
        # BM25 index), then both modes timed query by query, interleaved, so that background
        # work of the store (indexing fresh writes) and other load on the machine hit both alike.
        modes = {m: QueryOptions(top_k=5, mode=m) for m in ("vector", "hybrid")}
        for mode, opts in modes.items():
            with timer() as t:
                kb.query(qs[0], opts)
            result[f"{mode}_first_query_s"] = round(t["s"], 3)
        for q in qs[1:3]:
            for opts in modes.values():
                kb.query(q, opts)
        lat: dict[str, list[float]] = {m: [] for m in modes}
        for q in qs[3:]:
            for mode, opts in modes.items():
                with timer() as t:
                    kb.query(q, opts)
                lat[mode].append(t["s"])
        for mode in modes:
            result[mode] = summary_ms(lat[mode])
        out["sizes"][str(size)] = result
        print(f"[{label}] {size}: {result}", flush=True)
        catalog.delete(name)
    return out


def render(results: list[dict]) -> str:
    """The markdown table of one run (also the README's copy)."""
    rows = []
    for r in results:
        e2e = r["e2e"]
        rows.append([r["store"], f"{e2e['chunks']} (end-to-end, MiniLM)", e2e["chunks_per_s"]])
        rows[-1] += [""] * 5
        for size, s in r["sizes"].items():
            rows.append(
                [
                    r["store"],
                    size,
                    s["write_chunks_per_s"],
                    s["vector"]["p50_ms"],
                    s["vector"]["p95_ms"],
                    s["hybrid"]["p50_ms"],
                    s["hybrid"]["p95_ms"],
                    s["hybrid_first_query_s"],
                ]
            )
    return markdown_table(
        [
            "store",
            "chunks",
            "ingest chunks/s",
            "vector p50 ms",
            "vector p95 ms",
            "hybrid p50 ms",
            "hybrid p95 ms",
            "first hybrid query s (builds BM25)",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--e2e-chunks", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hybrid-bench-"))
    docs = root / "docs"
    write_documents(docs, args.e2e_chunks, random.Random(args.seed))
    server = ChromaServerProcess(root)
    try:
        results = [
            bench_store(
                "embedded",
                KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root / "emb")),
                docs,
                args.sizes,
                args.queries,
                args.seed,
            ),
            bench_store(
                "server",
                KnowledgeBaseCatalog(ServerStoreConfig(port=server.port)),
                docs,
                args.sizes,
                args.queries,
                args.seed,
            ),
        ]
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    table = render(results)
    path = write_results(
        "retrieval", {"machine": machine(), "args": vars(args), "results": results}, table
    )
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
