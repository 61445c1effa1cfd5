"""Query a knowledge base: vector search, or BM25 + vector fused by reciprocal rank."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from llama_index.core.schema import NodeWithScore
from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters, VectorStoreQuery
from llama_index.vector_stores.chroma import ChromaVectorStore

from retrieval.config import QueryOptions
from retrieval.embedders import Embedder
from retrieval.errors import InvalidQuery
from retrieval.ingest import chunk_id
from retrieval.keyword_index import OPEN, KeywordIndex
from retrieval.names import question_names

MAX_QUERY_CHARS = 4000


@dataclass(frozen=True)
class Fusion:
    """How hybrid mode fuses its vector and keyword (BM25) rankings: weighted reciprocal rank,
    score = sum over the lists of weight / (rrf_k + rank), rank counted from 0.

    The defaults were chosen on bench/retrieval_baselines.py (75 variants, stand-in set of 130
    questions; bench/results/retrieval_fusion_sweep.md): recall@1/3/5 0.715/0.923/0.962 against
    0.700/0.869/0.923 for the former depth 4, rrf_k 60. With rrf_k 60 a passage that both lists
    rank around 10th outscores one that a single list ranks first; rrf_k 5 keeps such hits.
    A keyword weight above 1 helped the questions written for the bench and hurt the examples'
    labelled ones (recall@1 0.617 -> 0.583 at depth 4, rrf_k 5), so both lists weigh the same.
    """

    depth: int = 8
    """Each list contributes top_k * depth candidates."""
    rrf_k: float = 5.0
    """Smaller values let a list's first places outweigh passages both lists rank lower."""
    vector_weight: float = 1.0
    keyword_weight: float = 1.0


FUSION = Fusion()


@dataclass(frozen=True)
class Citation:
    """Where a passage comes from: file, page (PDF, from 1) and character span within the page."""

    source: str
    file_name: str
    page: int | None
    start_char: int
    end_char: int

    def label(self) -> str:
        where = f" p.{self.page}" if self.page else ""
        return f"{self.file_name}{where} [{self.start_char}:{self.end_char}]"


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    id: str
    score: float
    """The ranking score: cosine similarity (vector mode) or the fused RRF score (hybrid)."""
    text: str
    citation: Citation
    metadata: dict
    similarity: float = 0.0
    """Cosine similarity of the passage to the query in both modes: how relevant it is."""


def check_query(text: str) -> str:
    stripped = (text or "").strip()
    if not stripped:
        raise InvalidQuery("empty query; give the question to search for, e.g. 'refund policy'")
    if len(stripped) > MAX_QUERY_CHARS:
        raise InvalidQuery(
            f"query is {len(stripped)} characters, above the {MAX_QUERY_CHARS} limit; shorten it"
        )
    return stripped


def search(
    collection,
    embedder: Embedder,
    text: str,
    options: QueryOptions,
    revision: str,
    keyword_folder: Path | None = None,
) -> list[Hit]:
    """Run one query. `revision` changes whenever the collection does; `keyword_folder` is
    where the keyword index is saved (None: kept in memory only)."""
    query = check_query(text)
    filters = _filters(options.filters)
    count = collection.count()  # one count a query: Chroma counts by scanning (13 ms at 100k)
    if count == 0:
        return []
    keyword = None  # the keyword index, opened and synced once for the name check and ranking
    if options.known_names_only and (names := question_names(query)):
        keyword = _synced_keywords(collection, keyword_folder, revision, count)
        if keyword.unknown(names):
            return []
    vector_store = ChromaVectorStore(chroma_collection=collection)
    embedding = embedder.model.get_query_embedding(query)
    if options.mode == "vector":
        results = vector_ranking(vector_store, embedding, options.top_k, filters)
        hits = [_hit(r, _cosine(r.score), similarity=_cosine(r.score)) for r in results]
    else:
        if keyword is None:
            keyword = _synced_keywords(collection, keyword_folder, revision, count)
        lists = ranked_lists(
            vector_store, keyword, options, query, embedding, options.top_k * FUSION.depth
        )
        if lists is None:  # nothing matches the filters
            return []
        hits = [_hit(r, r.score) for r in fuse(lists, options.top_k, FUSION)]
        hits = _with_similarity(collection, embedding, hits)
    if options.min_score is not None:
        hits = [h for h in hits if h.score >= options.min_score]
    if options.min_similarity is not None:
        hits = [h for h in hits if h.similarity >= options.min_similarity]
    if options.context_chars:
        hits = widen(collection, hits, options.context_chars)
    return hits


def _synced_keywords(collection, folder: Path | None, revision: str, count: int) -> KeywordIndex:
    """The collection's keyword index, brought in step with `revision`."""
    keyword = OPEN.get(collection, folder)
    keyword.sync(revision, count)
    return keyword


_MAX_NEIGHBOURS = 8  # per side; a budget is met long before with paragraph chunks

_GAPS = {0: "", 1: " "}  # between chunks of one paragraph; wider gaps are blank lines
WidenUnit = Literal["paragraph", "chunk"]
WIDEN_UNIT: WidenUnit = "chunk"
"""What small-to-big adds to a hit: single neighbouring chunks while they fit, or whole
paragraphs (the hit's own paragraph complete, then neighbouring paragraphs that fit). Chunks by
measurement (bench/retrieval_baselines.py, bench/results/retrieval_chunking_sweep.md): with
64-token paragraph chunks and 400 characters, recall@5 0.950 at 1,458 chars vs 0.945 at 1,518
by paragraph, and at the hand-made RRF's text budget 0.928 both (the report as PDF: 0.912 vs
0.901); whole paragraphs spend characters on long paragraphs a neighbouring chunk answers from."""
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class _Piece:
    id: str
    text: str
    page: int
    start: int
    end: int


def _piece(chunk_key: str, text: str, meta: dict) -> _Piece:
    start = int(meta.get("start_char", 0))
    return _Piece(
        chunk_key, text, int(meta.get("page") or 0), start, int(meta.get("end_char", start))
    )


def _same_paragraph(before: _Piece, after: _Piece) -> bool:
    """Consecutive chunks of one paragraph overlap or touch (the splitter cut a long paragraph);
    paragraphs are at least a blank line apart, and a chunk with a blank line inside
    (sentence-packed chunks) ends its paragraph."""
    return (
        before.page == after.page
        and after.start - before.end <= 1
        and not _BLANK_LINE.search(before.text + "\n" + after.text)
    )


def widen(collection, hits: list[Hit], budget: int, unit: WidenUnit = WIDEN_UNIT) -> list[Hit]:
    """Small-to-big: each hit's passage grows by its file's neighbouring text on the same page,
    the next and the previous in turn, while the passage's span stays within `budget` chars.
    By paragraph (`unit`): the hit's whole paragraph first (even past the budget: a passage
    never ends mid-paragraph), then whole neighbouring paragraphs that fit; by chunk: single
    neighbouring chunks. Neighbour ids are computed (they derive from source, file version and
    index), so one `get` fetches them all. Chunks shown in a better hit's passage are not
    repeated, and a hit whose own chunk was already shown is dropped."""
    if not hits:
        return hits
    wanted: set[str] = {hit.id for hit in hits}
    for hit in hits:
        meta = hit.metadata
        index, count = int(meta.get("chunk_index", 0)), int(meta.get("chunk_count", 0))
        last = index + _MAX_NEIGHBOURS + 1
        for other in range(
            max(0, index - _MAX_NEIGHBOURS), min(count, last) if count > 0 else last
        ):
            wanted.add(chunk_id(str(meta.get("source", "")), str(meta.get("file_hash", "")), other))
    found = collection.get(ids=sorted(wanted), include=["documents", "metadatas"])
    pieces = {
        key: _piece(key, text or "", meta or {})
        for key, text, meta in zip(
            found["ids"], found["documents"], found["metadatas"], strict=True
        )
    }
    shown: set[str] = set()
    out = []
    for hit in hits:
        if hit.id in shown:
            continue
        out.append(_widened(hit, pieces, shown, budget, unit))
    return out


def _widened(
    hit: Hit, pieces: dict[str, _Piece], shown: set[str], budget: int, unit: WidenUnit
) -> Hit:
    meta = hit.metadata
    source, file_hash = str(meta.get("source", "")), str(meta.get("file_hash", ""))
    index = int(meta.get("chunk_index", 0))
    own = _piece(hit.id, hit.text, meta)

    def piece_at(i: int) -> _Piece | None:
        piece = pieces.get(chunk_id(source, file_hash, i))
        return None if piece is None or piece.id in shown or piece.page != own.page else piece

    def run_from(i: int, step: int, joined: _Piece | None) -> list[_Piece]:
        """Chunks from index `i` on in direction `step`, in reading order: by paragraph, those
        of one paragraph (the paragraph of `joined`, the chunk before `i`, when given); by chunk,
        the one chunk (none when `joined` is given)."""
        run: list[_Piece] = []
        last = joined
        while (piece := piece_at(i + step * len(run))) is not None:
            if last is not None and (
                unit == "chunk"
                or not _same_paragraph(*((last, piece) if step == 1 else (piece, last)))
            ):
                break
            run.append(piece)
            last = piece
            if unit == "chunk":
                break
        return run if step == 1 else run[::-1]

    shown.add(hit.id)
    window = [*run_from(index - 1, -1, own), own, *run_from(index + 1, 1, own)]
    shown.update(p.id for p in window)  # the hit's own paragraph, whatever its length
    sides = {1: index + 1 + window[::-1].index(own), -1: index - 1 - window.index(own)}
    while sides:
        for step in list(sides):
            run = run_from(sides[step], step, None)
            start = min(window[0].start, run[0].start) if run else 0
            end = max(window[-1].end, run[-1].end) if run else 0
            if not run or end - start > budget:
                del sides[step]
                continue
            window = [*window, *run] if step == 1 else [*run, *window]
            shown.update(p.id for p in run)
            sides[step] += step * len(run)
    if len(window) == 1:
        return hit
    text = window[0].text
    for before, after in itertools.pairwise(window):
        gap = after.start - before.end  # < 0: the chunks overlap; 1: a space or line break
        text += after.text[-gap:] if gap < 0 else _GAPS.get(gap, "\n\n") + after.text
    citation = dataclasses.replace(
        hit.citation, start_char=window[0].start, end_char=window[-1].end
    )
    return dataclasses.replace(hit, text=text, citation=citation)


def vector_ranking(
    vector_store: ChromaVectorStore,
    embedding: list[float],
    depth: int,
    filters: MetadataFilters | None,
) -> list[NodeWithScore]:
    """The `depth` chunks nearest to `embedding`, scored as Chroma reports (exp(-distance)).
    Straight to the store: a LlamaIndex index object would load a tokenizer it never uses."""
    found = vector_store.query(
        VectorStoreQuery(query_embedding=embedding, similarity_top_k=depth, filters=filters)
    )
    return [
        NodeWithScore(node=node, score=score)
        for node, score in zip(found.nodes or [], found.similarities or [], strict=True)
    ]


def ranked_lists(
    vector_store: ChromaVectorStore,
    keyword: KeywordIndex,
    options: QueryOptions,
    query: str,
    embedding: list[float],
    depth: int,
) -> tuple[list[NodeWithScore], list[NodeWithScore]] | None:
    """The vector and keyword rankings hybrid mode fuses, `depth` deep each (None: no chunk
    matches the filters). `keyword` must be in step with the collection (`sync`)."""
    keywords = keyword.search(query, depth, options.filters)
    if keywords is None:
        return None
    return vector_ranking(vector_store, embedding, depth, _filters(options.filters)), keywords


def fuse(
    lists: tuple[list[NodeWithScore], list[NodeWithScore]], top_k: int, fusion: Fusion
) -> list[NodeWithScore]:
    """Weighted reciprocal-rank fusion of the (vector, keyword) rankings; ties keep the vector
    order. The returned nodes carry the fused score."""
    scores: dict[str, float] = {}
    nodes: dict[str, NodeWithScore] = {}
    for ranking, weight in zip(lists, (fusion.vector_weight, fusion.keyword_weight), strict=True):
        for rank, result in enumerate(ranking):
            key = result.node.node_id
            scores[key] = scores.get(key, 0.0) + weight / (fusion.rrf_k + rank)
            nodes.setdefault(key, result)
    best = sorted(scores, key=lambda key: -scores[key])[:top_k]  # stable: first seen wins ties
    return [NodeWithScore(node=nodes[key].node, score=scores[key]) for key in best]


def _with_similarity(collection, query_embedding: list[float], hits: list[Hit]) -> list[Hit]:
    """Fill in the cosine similarity of fused hits (RRF scores say nothing about relevance)."""
    if not hits:
        return hits
    stored = collection.get(ids=[h.id for h in hits], include=["embeddings"])
    vectors = dict(zip(stored["ids"], stored["embeddings"], strict=True))
    q = np.asarray(query_embedding, dtype=np.float64)
    q_norm = float(np.linalg.norm(q)) or 1.0
    out = []
    for hit in hits:
        v = np.asarray(vectors[hit.id], dtype=np.float64)
        cosine = float(q @ v) / (q_norm * (float(np.linalg.norm(v)) or 1.0))
        out.append(dataclasses.replace(hit, similarity=round(cosine, 6)))
    return out


def _cosine(similarity: float | None) -> float:
    # ChromaVectorStore reports exp(-distance); our collections use cosine distance (1 - cos).
    if not similarity:
        return -1.0
    return 1.0 + math.log(similarity)


def _filters(raw: dict) -> MetadataFilters | None:
    if not raw:
        return None
    _check_filter_keys(raw)
    return MetadataFilters(filters=[ExactMatchFilter(key=k, value=v) for k, v in raw.items()])


def _check_filter_keys(raw: dict) -> None:
    for key in raw:
        if not key or key.startswith("_"):
            raise InvalidQuery(
                f"invalid filter key '{key}'; use a metadata field such as file_name"
            )


def prepare_keyword_index(
    collection, revision: str, filters: dict, folder: Path | None = None
) -> None:
    """Bring the keyword index the next hybrid query will use up to date (and its filter)."""
    _check_filter_keys(filters)
    keyword = OPEN.get(collection, folder)
    keyword.sync(revision)
    keyword.mask(filters, keyword.ids)


def _hit(result: NodeWithScore, score: float, similarity: float = 0.0) -> Hit:
    node = result.node
    meta = dict(node.metadata)
    page = int(meta.get("page") or 0) or None
    return Hit(
        id=node.node_id,
        score=round(score, 6),
        text=node.get_content(),
        citation=Citation(
            source=str(meta.get("source", "")),
            file_name=str(meta.get("file_name", "")),
            page=page,
            start_char=int(meta.get("start_char", 0)),
            end_char=int(meta.get("end_char", 0)),
        ),
        metadata=meta,
        similarity=round(similarity, 6),
    )
