"""Abstention by similarity: a fixed `min_similarity: 0.25` against `auto`, the knowledge base's
own floor (retrieval/relevance.py), on the three example knowledge bases.

    .venv/bin/python -m bench.relevance_floor

Each example's documents are ingested with the default settings into a fresh embedded store;
each labelled single-turn question is searched as its app searches (hybrid, top 4), and the best
cosine similarity among the hits decides: at or above the threshold the app answers, below it
takes its no-context path. Counted per knowledge base: answerable questions wrongly turned away,
and unanswerable ones that get through (off-topic ones can be stopped by a threshold; ones on
the knowledge base's topic that its documents do not answer cannot, and are listed apart), and
off-topic questions kept out of the floor's probes (bench/data/off_topic_heldout.txt) that get
stopped; `known_names_only` adds a stop for questions naming something no chunk contains. No
model runs: abstention by threshold is decided by retrieval alone. Writes
bench/results/relevance_floor.{json,md} and the README block.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import machine, markdown_table, write_results  # noqa: E402

EXAMPLES = REPO / "examples"
CORPORA = {
    "northwind-report": (
        [EXAMPLES / "ceo-report-qa" / "docs"],
        EXAMPLES / "ceo-report-qa" / "eval" / "questions.jsonl",
        None,
    ),
    "brewbird": (
        [EXAMPLES / "branded-chatbot" / "brands" / "brewbird" / "kb"],
        EXAMPLES / "branded-chatbot" / "eval" / "questions.jsonl",
        "brewbird",
    ),
    "kettleandco": (
        [EXAMPLES / "branded-chatbot" / "brands" / "kettleandco" / "kb"],
        EXAMPLES / "branded-chatbot" / "eval" / "questions.jsonl",
        "kettleandco",
    ),
}
FIXED = 0.25
"""The examples' setting before `auto`."""
HELD_OUT = REPO / "bench" / "data" / "off_topic_heldout.txt"


def held_out_questions() -> list[str]:
    lines = HELD_OUT.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def cases(path: Path, brand: str | None) -> list[dict]:
    """Single-turn labelled questions (follow-ups are searched with their history, not alone)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        case = json.loads(line) if line.strip() else None
        if case is None or case.get("turns") or case.get("messages"):
            continue
        if brand is None or case.get("brand") == brand:
            out.append(case)
    return out


def measure(kb, labelled: list[dict]) -> dict:
    from retrieval import QueryOptions

    # The threshold applies to the hits before small-to-big widening (which may fold a hit
    # into a better-ranked one's passage), so the best similarity is taken there too.
    options = QueryOptions(top_k=4, mode="hybrid", context_chars=0)
    from retrieval.relevance import relevance_floor

    floor = kb.relevance_floor(options)

    def probe(question: str) -> float | None:
        return max((h.similarity for h in kb.query(question, options)), default=None)

    floor_95 = relevance_floor(probe, 0.95)  # the alternative measured
    names = options.model_copy(update={"known_names_only": True})
    rows = []
    asked = [(c["question"], c.get("answerable", True) is not False) for c in labelled]
    asked += [(q, None) for q in held_out_questions()]
    for question, answerable in asked:
        hits = kb.query(question, options)
        best = max((h.similarity for h in hits), default=-1.0)
        rows.append(
            {
                "question": question,
                "answerable": answerable,
                "best_similarity": round(best, 3),
                "unknown_name": bool(hits) and not kb.query(question, names),
            }
        )
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if r["answerable"] is False]
    off_topic = [r for r in rows if r["answerable"] is None]

    def outcome(threshold: float, by_names: bool = False) -> dict:
        def stopped(r: dict) -> bool:
            return r["best_similarity"] < threshold or (by_names and r["unknown_name"])

        return {
            "threshold": round(threshold, 3),
            "answerable_turned_away": sum(map(stopped, answerable)),
            "unanswerable_stopped": sum(map(stopped, unanswerable)),
            "held_out_off_topic_stopped": sum(map(stopped, off_topic)),
        }

    return {
        "chunks": kb.collection.count(),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "held_out_off_topic": len(off_topic),
        "fixed": outcome(FIXED),
        "auto": outcome(floor),
        "auto_q95": outcome(floor_95),
        "auto_names": outcome(floor, by_names=True),
        "lowest_answerable": sorted(r["best_similarity"] for r in answerable)[:3],
        "unanswerable_similarities": sorted(
            (r["best_similarity"], r["question"]) for r in unanswerable
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (embeddings)")
    args = parser.parse_args(argv)

    import torch

    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog

    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=Path(tmp) / "chroma"))
        for name, (docs, questions, brand) in CORPORA.items():
            kb = catalog.create(name)
            kb.ingest(docs, progress=False)
            results[name] = measure(kb, cases(questions, brand))
            print(name, json.dumps({k: results[name][k] for k in ("fixed", "auto")}), flush=True)
    rows = []
    for name, r in results.items():
        for label, key in (
            (f"fixed {FIXED}", "fixed"),
            ("auto (90th percentile, the default)", "auto"),
            ("auto at the 95th percentile (measured, not chosen)", "auto_q95"),
            ("auto + known_names_only (the apps' default)", "auto_names"),
        ):
            o = r[key]
            rows.append(
                [
                    name,
                    label,
                    o["threshold"],
                    f"{o['answerable_turned_away']} / {r['answerable']}",
                    f"{o['unanswerable_stopped']} / {r['unanswerable']}",
                    f"{o['held_out_off_topic_stopped']} / {r['held_out_off_topic']}",
                ]
            )
    table = markdown_table(
        [
            "knowledge base (default chunks)",
            "min_similarity",
            "threshold",
            "answerable turned away",
            "unanswerable stopped",
            "held-out off-topic stopped",
        ],
        rows,
    )
    payload = {"machine": machine(), "fixed": FIXED, "results": results}
    path = write_results("relevance_floor", payload, "# Relevance floor\n\n" + table)
    print(table)
    print(f"results in {path}")


if __name__ == "__main__":
    main()
