"""Hand-made retrieval baselines against Hybrid's knowledge base, on one corpus and question set.

    .venv/bin/python -m bench.retrieval_baselines     # about a minute on 2 busy cores

Writes bench/results/retrieval_baselines.{json,md}, retrieval_fusion_sweep.md (the fusion
variants hybrid mode's defaults were chosen from; see `retrieval.search.Fusion`) and
retrieval_chunking_sweep.md (the chunkings and passage widenings the chunking,
`QueryOptions.context_chars` and `retrieval.search.WIDEN_UNIT` defaults were chosen from, over
the corpus below and over the same corpus with the report as the example app's PDF).

STAND-IN DATA. No real financial-report QA set installs from the package registry (checked: the
EDGAR packages are API clients; `jfinqa` downloads from a hub at run time; `knowlytix-benchmark`
ships synthetic bank reports with graph questions whose answers are not spans, and needs Python
3.12). The corpus is the repo's own report-like documents: the Northwind annual report
(examples/ceo-report-qa/report_source.md, tables included) and the two brands' support pages
(examples/branded-chatbot/brands/*/kb), all in one knowledge base. The questions are the
examples' labelled questions plus bench/data/report_questions.jsonl, written for this bench:
span answers, many of them context-poor (no company or product name), some answered only by a
table cell. Numbers here say how the retrievers compare on this set, not on real reports.

Metric: answer recall@k = share of questions with a gold answer string (whitespace collapsed,
case-folded) inside one of the top-k passages; chars = mean characters of the top-k passages
(the text a prompt would spend). Retrievers:
- hand-made, over paragraphs (the loaded text split at blank lines): BM25 (rank_bm25's BM25Okapi
  on lower-cased word tokens), all-MiniLM-L6-v2 cosine, and reciprocal-rank fusion (k=60) of the
  two full rankings;
- Hybrid through its public API with default settings: vector, hybrid, and hybrid at the
  hand-made RRF's top-5 text budget (the largest top_k whose mean chars stay within it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 shared cores: torch's default threads thrash

import numpy as np

from bench.common import RESULTS, machine, markdown_table, write_results
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog, QueryOptions
from retrieval.loaders import load_document

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CORPUS = [
    EXAMPLES / "ceo-report-qa" / "report_source.md",
    EXAMPLES / "branded-chatbot" / "brands" / "brewbird" / "kb",
    EXAMPLES / "branded-chatbot" / "brands" / "kettleandco" / "kb",
]
QUESTION_FILES = [
    Path(__file__).resolve().parent / "data" / "report_questions.jsonl",
    EXAMPLES / "ceo-report-qa" / "eval" / "questions.jsonl",
    EXAMPLES / "branded-chatbot" / "eval" / "questions.jsonl",
]
KS = (1, 3, 5)
RRF_K = 60  # the constant of the usual reciprocal-rank fusion (Cormack et al.)


@dataclass(frozen=True)
class Question:
    text: str
    answers: tuple[str, ...]
    kind: str
    """context-poor (names no company or product), table, specific, or labelled (examples')."""


@dataclass(frozen=True)
class Passage:
    text: str
    source: str


def collapse(text: str) -> str:
    return " ".join(text.split()).casefold()


def corpus_files(paths: Sequence[Path] = CORPUS) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def paragraphs(files: Sequence[Path]) -> list[Passage]:
    """The hand-made text units: each document's loaded text split at blank lines."""
    units = []
    for path in files:
        for page in load_document(path):
            for block in re.split(r"\n\s*\n", page.text):
                if block.strip():
                    units.append(Passage(block.strip(), path.name))
    return units


def load_questions(files: Sequence[Path], corpus_text: str) -> list[Question]:
    """Span questions. The examples' rows keep their `answers` that occur verbatim in the corpus
    (their other answers are figures for the app evaluation), else their `evidence` span;
    unanswerable rows and follow-ups are skipped. Raises if a gold answer is not in the corpus."""
    questions, missing = [], []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("answerable", True) is False or row.get("messages"):
                continue
            answers = tuple(a for a in row.get("answers", []) if collapse(a) in corpus_text)
            if "kind" in row:  # written for this bench: every answer must be a span
                answers = tuple(row["answers"])
            elif not answers:
                answers = (row["evidence"],)
            for answer in answers:
                if collapse(answer) not in corpus_text:
                    missing.append(f"{path.name}: {answer!r}")
            questions.append(Question(row["question"], answers, row.get("kind", "labelled")))
    if missing:
        raise SystemExit(f"{len(missing)} gold answers are not in the corpus: {'; '.join(missing)}")
    return questions


def answered(passages: Sequence[str], question: Question) -> bool:
    texts = [collapse(p) for p in passages]
    return any(collapse(a) in t for a in question.answers for t in texts)


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[int]:
    """Reciprocal-rank fusion of full rankings (lists of unit indexes, best first)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, index in enumerate(ranking, 1):
            scores[index] = scores.get(index, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda i: (-scores[i], i))


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class HandMade:
    """The baselines a user writes in twenty lines: rank_bm25 and MiniLM over paragraphs."""

    def __init__(self, units: Sequence[Passage]):
        from rank_bm25 import BM25Okapi
        from sentence_transformers import SentenceTransformer

        from retrieval.embedders import bundled_minilm_path

        self.units = list(units)
        self.bm25 = BM25Okapi([tokens(u.text) for u in self.units])
        self.model = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
        self.vectors = self.model.encode(
            [u.text for u in self.units], normalize_embeddings=True, batch_size=32
        )

    def bm25_ranking(self, query: str) -> list[int]:
        scores = self.bm25.get_scores(tokens(query))
        return [int(i) for i in np.argsort(-scores, kind="stable")]

    def vector_ranking(self, query: str) -> list[int]:
        q = self.model.encode([query], normalize_embeddings=True)[0]
        return [int(i) for i in np.argsort(-(self.vectors @ q), kind="stable")]

    def retrievers(self) -> dict[str, Callable[[str, int], list[str]]]:
        def top(ranking: Callable[[str], list[int]]) -> Callable[[str, int], list[str]]:
            return lambda q, k: [self.units[i].text for i in ranking(q)[:k]]

        return {
            "hand-made BM25 (rank_bm25), paragraphs": top(self.bm25_ranking),
            "hand-made MiniLM, paragraphs": top(self.vector_ranking),
            "hand-made RRF of the two, paragraphs": top(
                lambda q: rrf([self.bm25_ranking(q), self.vector_ranking(q)])
            ),
        }


@dataclass
class Row:
    retriever: str
    top_k: int
    recall: dict[str, float]
    """recall@top_k over all questions and per question kind."""
    chars: float


def score(
    name: str, retrieve: Callable[[str, int], list[str]], questions: Sequence[Question], k: int
) -> Row:
    found: dict[str, list[bool]] = {"all": []}
    chars = []
    for q in questions:
        passages = retrieve(q.text, k)
        hit = answered(passages, q)
        found["all"].append(hit)
        found.setdefault(q.kind, []).append(hit)
        chars.append(sum(len(p) for p in passages))
    recall = {kind: round(sum(v) / len(v), 3) for kind, v in found.items()}
    return Row(name, k, recall, round(float(np.mean(chars)), 0))


def recall_curve(
    name: str, retrieve: Callable[[str, int], list[str]], questions: Sequence[Question]
) -> list[Row]:
    return [score(name, retrieve, questions, k) for k in KS]


def hybrid_retriever(kb, mode: str, **options) -> Callable[[str, int], list[str]]:
    """Hybrid's passages for a query at top_k = k (QueryOptions defaults unless overridden);
    remembered, as the recall curve and the budget search ask for the same ones."""
    seen: dict[tuple[str, int], list[str]] = {}

    def retrieve(q: str, k: int) -> list[str]:
        if (q, k) not in seen:
            hits = kb.query(q, QueryOptions(mode=mode, top_k=k, **options))
            seen[q, k] = [h.text for h in hits]
        return seen[q, k]

    return retrieve


def at_budget(
    name: str,
    retrieve: Callable[[str, int], list[str]],
    questions: Sequence[Question],
    budget: float,
) -> Row:
    """The largest top_k whose mean characters stay within `budget`."""
    best = score(name, retrieve, questions, 1)
    for k in range(2, 11):
        row = score(name, retrieve, questions, k)
        if row.chars > budget:
            break
        best = row
    best.retriever = f"{name} at the RRF's top-5 budget"
    return best


def rrf_top5(units: Sequence[Passage], questions: Sequence[Question]) -> tuple[float, float]:
    """The hand-made RRF's mean characters and recall at top-5 over `units`."""
    row = score("rrf", HandMade(units).retrievers()["hand-made RRF of the two, paragraphs"],
                questions, 5)  # fmt: skip
    return row.chars, row.recall["all"]


def run(embedders: Sequence[str] = ()) -> dict:
    import torch

    torch.set_num_threads(1)
    files = corpus_files()
    units = paragraphs(files)
    corpus_text = collapse("\n".join(u.text for u in units))
    questions = load_questions(QUESTION_FILES, corpus_text)
    rows: list[Row] = []
    hand = HandMade(units)
    for name, retrieve in hand.retrievers().items():
        rows += recall_curve(name, retrieve, questions)
    budget, rrf_recall = next(
        (r.chars, r.recall["all"])
        for r in rows
        if r.retriever.startswith("hand-made RRF") and r.top_k == 5
    )

    root = Path(tempfile.mkdtemp(prefix="hybrid-baselines-"))
    try:
        kb = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root)).create("baselines")
        report = kb.ingest(files, progress=False)
        for mode in ("vector", "hybrid"):
            rows += recall_curve(f"Hybrid {mode}, defaults", hybrid_retriever(kb, mode), questions)
        rows.append(at_budget("Hybrid hybrid", hybrid_retriever(kb, "hybrid"), questions, budget))
        sweeps = fusion_sweep(kb, questions)
        pdf_files = corpus_files([PDF_REPORT, *CORPUS[1:]])
        pdf_rrf = rrf_top5(paragraphs(pdf_files), questions)
        rrf_by_corpus = {"markdown": (budget, rrf_recall), "pdf": pdf_rrf}
        corpora = {"markdown": (files, budget), "pdf": (pdf_files, pdf_rrf[0])}
        chunking = chunking_sweep(root, corpora, questions)
        compared = compare_embedders(root, files, questions, kb, embedders)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    kinds: dict[str, int] = {}
    for q in questions:
        kinds[q.kind] = kinds.get(q.kind, 0) + 1
    return {
        "machine": machine(),
        "stand_in": True,
        "corpus": [str(f.relative_to(REPO)) for f in files],
        "paragraphs": len(units),
        "chunks": report.chunks_added,
        "questions": len(questions),
        "question_kinds": kinds,
        "rrf_top5_budget_chars": budget,
        "rrf_top5_recall": rrf_recall,
        "rrf_top5_by_corpus": rrf_by_corpus,
        "rows": [r.__dict__ for r in rows],
        "fusion_sweep": sweeps,
        "chunking_sweep": chunking,
        "embedders": compared,
    }


def compare_embedders(
    root: Path, files: Sequence[Path], questions: Sequence[Question], default_kb, models
) -> list[dict]:
    """Vector and hybrid recall@1/3/5 and mean query time per embedder, default settings
    otherwise: the bundled all-MiniLM-L6-v2 (the default knowledge base) and each local
    sentence-transformers folder in `models` (--embedder)."""
    import time

    from retrieval import EmbedderConfig, KnowledgeBaseSettings

    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root))
    out = []
    for model in [None, *models]:
        kb = default_kb
        if model is not None:
            kb = catalog.create("embedder-" + Path(model).name.lower()[:40], KnowledgeBaseSettings(
                embedder=EmbedderConfig(model=str(model))))  # fmt: skip
            kb.ingest(files, progress=False)
        row: dict = {"embedder": kb.embedder.identity, "dimension": kb.embedder.dimension}
        for mode in ("vector", "hybrid"):
            started = time.perf_counter()
            curve = recall_curve(mode, hybrid_retriever(kb, mode), questions)
            row[mode] = {r.top_k: r.recall["all"] for r in curve}
            row[f"{mode}_ms_per_query"] = round(
                (time.perf_counter() - started) * 1000 / (len(questions) * len(KS)), 1
            )
        out.append(row)
    return out


def embedders_table(payload: dict) -> str:
    body = [
        [e["embedder"], e["dimension"]]
        + [f"{e[m][k]:.3f}" for m in ("vector", "hybrid") for k in KS]
        + [e["vector_ms_per_query"], e["hybrid_ms_per_query"]]
        for e in payload["embedders"]
    ]
    headers = ["embedder", "dim"] + [f"{m} r@{k}" for m in ("vector", "hybrid") for k in KS]
    headers += ["vector ms/query", "hybrid ms/query"]
    return (
        "Hybrid per embedder, default chunking and widening (ms/query: mean over the bench's "
        "queries, embedding included, on the shared 2-core machine).\n\n"
        + markdown_table(headers, body)
    )


SWEEP_CHUNKING = (("structure", 64), ("structure", 128), ("structure", 200), ("sentences", 200))
SWEEP_WIDENING = ((None, 0), ("chunk", 400), ("chunk", 800), ("paragraph", 400), ("paragraph", 800))
"""(widening unit, context chars): `retrieval.search.widen`'s unit and `QueryOptions.context_chars`."""
PDF_REPORT = EXAMPLES / "ceo-report-qa" / "docs"
"""The report as the example app ingests it (rendered from report_source.md, with a running
header and page footer on every page but the cover)."""


class FusedRankings:
    """A knowledge base's vector and BM25 rankings per question, 10 x FUSION.depth deep, fused
    for any top_k <= 10 exactly as `retrieval.search.search` fuses them: one query per question
    serves every top-k and widening of the sweep."""

    def __init__(self, kb):
        from llama_index.vector_stores.chroma import ChromaVectorStore

        from retrieval.keyword_index import OPEN

        self.kb = kb
        self.store = ChromaVectorStore(chroma_collection=kb.collection)
        self.keyword = OPEN.get(kb.collection, kb.keyword_folder)
        self.keyword.sync(kb._revision())
        self.lists: dict[str, tuple] = {}

    def hits(self, q: str, k: int) -> list:
        from retrieval.search import FUSION, _hit, fuse, ranked_lists

        if q not in self.lists:
            embedding = self.kb.embedder.model.get_query_embedding(q)
            options = QueryOptions(mode="hybrid")
            depth = 10 * FUSION.depth
            self.lists[q] = ranked_lists(self.store, self.keyword, options, q, embedding, depth)
        vector, keyword = self.lists[q]
        cut = (vector[: k * FUSION.depth], keyword[: k * FUSION.depth])
        return [_hit(r, r.score) for r in fuse(cut, k, FUSION)]

    def retriever(self, unit: str | None, context: int) -> Callable[[str, int], list[str]]:
        from retrieval.search import widen

        seen: dict[tuple[str, int], list[str]] = {}

        def retrieve(q: str, k: int) -> list[str]:
            if (q, k) not in seen:
                hits = self.hits(q, k)
                if unit is not None:
                    hits = widen(self.kb.collection, hits, context, unit)  # type: ignore[arg-type]
                seen[q, k] = [h.text for h in hits]
            return seen[q, k]

        return retrieve


def chunking_sweep(
    root: Path, corpora: dict[str, tuple[list[Path], float]], questions: Sequence[Question]
) -> list[dict]:
    """Hybrid mode over each corpus (name -> files and its hand-made RRF's top-5 budget), chunking
    (boundaries, chunk size) and passage widening (`SWEEP_WIDENING`): recall@1/3/5 with the
    characters read at top-5, and recall at the hand-made RRF's top-5 budget. Each corpus and
    chunking is its own knowledge base."""
    from retrieval import ChunkingConfig, KnowledgeBaseSettings

    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root))
    out = []
    for corpus, (files, budget) in corpora.items():
        for boundaries, size in SWEEP_CHUNKING:
            chunking = ChunkingConfig(
                boundaries=boundaries, chunk_size=size, chunk_overlap=min(40, size // 4)
            )
            name = f"sweep-{corpus}-{boundaries}-{size}"
            kb = catalog.create(name, KnowledgeBaseSettings(chunking=chunking))
            report = kb.ingest(files, progress=False)
            rankings = FusedRankings(kb)
            for unit, context in SWEEP_WIDENING:
                retrieve = rankings.retriever(unit, context)
                curve = recall_curve(name, retrieve, questions)
                fitted = at_budget(name, retrieve, questions, budget)
                out.append(
                    {
                        "corpus": corpus,
                        "boundaries": boundaries,
                        "chunk_size": size,
                        "chunks": report.chunks_added,
                        "widen_by": unit or "-",
                        "context_chars": context,
                        "recall": {r.top_k: r.recall["all"] for r in curve},
                        "chars_top5": curve[-1].chars,
                        "budget_chars": budget,
                        "budget_top_k": fitted.top_k,
                        "budget_recall": fitted.recall["all"],
                        "budget_fitted_chars": fitted.chars,
                    }
                )
            catalog.delete(name)
    return out


def chunking_table(payload: dict) -> str:
    from retrieval import ChunkingConfig, QueryOptions
    from retrieval.search import WIDEN_UNIT

    body = [
        [s["corpus"], s["boundaries"], s["chunk_size"], s["chunks"], s["widen_by"]]
        + [s["context_chars"]]
        + [f"{s['recall'][k]:.3f}" for k in KS]
        + [int(s["chars_top5"]), int(s["budget_chars"]), s["budget_top_k"]]
        + [f"{s['budget_recall']:.3f}"]
        for s in payload["chunking_sweep"]
    ]
    defaults = ChunkingConfig()
    budgets = ", ".join(
        f"{name}: {int(chars)} chars, recall@5 {recall:.3f}"
        for name, (chars, recall) in payload["rrf_top5_by_corpus"].items()
    )
    head = (
        "Hybrid mode per corpus, chunking and passage widening (widen by: what small-to-big "
        "adds to a hit, up to 'context chars' per passage: single neighbouring chunks, or the "
        "hit's whole paragraph then whole neighbouring paragraphs). Corpus 'markdown' has the "
        "report as report_source.md, 'pdf' as the example app's PDF (running header and footer "
        "stripped at load). 'at budget' = the largest top-k whose passages stay within the "
        f"hand-made RRF's top-5 text over the same corpus ({budgets}). Defaults: "
        f"{defaults.boundaries}, chunk size {defaults.chunk_size}, widen by {WIDEN_UNIT}, "
        f"context chars {QueryOptions().context_chars}."
    )
    headers = ["corpus", "boundaries", "chunk size", "chunks", "widen by", "context chars"]
    headers += ["r@1", "r@3", "r@5", "chars@5", "budget chars", "top-k at budget"]
    headers += ["recall at budget"]
    return head + "\n\n" + markdown_table(headers, body)


SWEEP_DEPTHS = (1, 2, 4, 8, 1000)
SWEEP_RRF_K = (60.0, 20.0, 10.0, 5.0, 1.0)
SWEEP_KEYWORD_WEIGHTS = (1.0, 1.5, 2.0)


def fusion_sweep(kb, questions: Sequence[Question]) -> list[dict]:
    """Hybrid's own two rankings fused with each variant (depth per top_k, RRF constant, keyword
    weight), through the fusion function `search` uses. Recall is reported on the questions
    written for this bench and on the examples' labelled ones apart, so a choice made on one
    half can be checked on the other."""
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from retrieval.keyword_index import OPEN
    from retrieval.search import Fusion, fuse, ranked_lists

    store = ChromaVectorStore(chroma_collection=kb.collection)
    everything = kb.collection.count()
    options = QueryOptions(mode="hybrid")
    keyword = OPEN.get(kb.collection, kb.keyword_folder)
    keyword.sync(kb._revision())
    lists = []
    for q in questions:
        embedding = kb.embedder.model.get_query_embedding(q.text)
        lists.append(ranked_lists(store, keyword, options, q.text, embedding, everything))
    out = []
    for depth in SWEEP_DEPTHS:
        for rrf_k in SWEEP_RRF_K:
            for weight in SWEEP_KEYWORD_WEIGHTS:
                fusion = Fusion(depth=depth, rrf_k=rrf_k, keyword_weight=weight)
                found: dict[str, dict[int, list[bool]]] = {}
                for q, (vector, keyword) in zip(questions, lists, strict=True):
                    half = "examples" if q.kind == "labelled" else "bench-written"
                    for k in KS:
                        cut = (vector[: k * depth], keyword[: k * depth])
                        hit = answered([r.node.get_content() for r in fuse(cut, k, fusion)], q)
                        for group in ("all", half):
                            found.setdefault(group, {}).setdefault(k, []).append(hit)
                out.append(
                    {
                        "depth": depth,
                        "rrf_k": rrf_k,
                        "keyword_weight": weight,
                        "recall": {
                            g: {k: round(sum(v) / len(v), 3) for k, v in per_k.items()}
                            for g, per_k in found.items()
                        },
                    }
                )
    return out


def sweep_table(sweeps: list[dict]) -> str:
    rows = sorted(sweeps, key=lambda s: [-s["recall"]["all"][k] for k in (5, 3, 1)])
    body = [
        [s["depth"], s["rrf_k"], s["keyword_weight"]]
        + [f"{s['recall']['all'][k]:.3f}" for k in KS]
        + [f"{s['recall'][g][k]:.3f}" for g in ("bench-written", "examples") for k in KS]
        for s in rows
    ]
    from retrieval.search import FUSION

    head = (
        "Hybrid's own vector and BM25 rankings fused by each variant (recall@k at top_k = k; "
        "depth = candidates per list / top_k), best recall@5 first. Default: depth "
        f"{FUSION.depth}, rrf_k {FUSION.rrf_k}, keyword weight {FUSION.keyword_weight}."
    )
    headers = ["depth", "rrf_k", "keyword weight", "r@1", "r@3", "r@5"]
    headers += [f"r@{k} {g}" for g in ("bench-written", "examples") for k in KS]
    return head + "\n\n" + markdown_table(headers, body)


def table(payload: dict) -> str:
    kinds = sorted(payload["question_kinds"])
    headers = ["retriever", "top-k", "recall@k"] + [
        f"{k} ({payload['question_kinds'][k]})" for k in kinds
    ]
    headers.append("chars")
    body = []
    for r in payload["rows"]:
        body.append(
            [r["retriever"], r["top_k"], f"{r['recall']['all']:.3f}"]
            + [f"{r['recall'].get(k, 0):.2f}" for k in kinds]
            + [int(r["chars"])]
        )
    head = (
        f"Stand-in set (not real reports): {payload['questions']} questions, "
        f"{payload['paragraphs']} paragraphs / {payload['chunks']} Hybrid chunks; recall@k per "
        "question kind; chars = mean text of the top-k passages."
    )
    return head + "\n\n" + markdown_table(headers, body)


def readme_text(payload: dict) -> str:
    """The README's shorter copy: recall@5 and chars at top-5 (and the budget row)."""
    rows = [
        [r["retriever"], r["top_k"], f"{r['recall']['all']:.3f}", int(r["chars"])]
        for r in payload["rows"]
        if r["top_k"] == 5 or "budget" in r["retriever"]
    ]
    return (
        f"Stand-in set, {payload['questions']} questions (not real reports; see the script):\n\n"
        + markdown_table(["retriever", "top-k", "answer recall", "chars"], rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--embedder",
        action="append",
        default=[],
        help="a local sentence-transformers folder to compare with MiniLM (repeatable)",
    )
    payload = run(parser.parse_args().embedder)
    text = table(payload)
    path = write_results("retrieval_baselines", payload, text, readme=readme_text(payload))
    print(text)
    sweep = sweep_table(payload["fusion_sweep"])
    (RESULTS / "retrieval_fusion_sweep.md").write_text(sweep + "\n", encoding="utf-8")
    print(sweep)
    chunks = chunking_table(payload)
    (RESULTS / "retrieval_chunking_sweep.md").write_text(chunks + "\n", encoding="utf-8")
    print(chunks)
    compared = embedders_table(payload)
    (RESULTS / "retrieval_embedders.md").write_text(compared + "\n", encoding="utf-8")
    print(compared)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
