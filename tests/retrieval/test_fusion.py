"""Hybrid mode's rank fusion keeps a passage that one list ranks first (issue 14)."""

from __future__ import annotations

from llama_index.core.schema import NodeWithScore, TextNode

from retrieval import ChunkingConfig, KnowledgeBaseSettings, QueryOptions
from retrieval.search import FUSION, Fusion, fuse


def ranking(*ids: str) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(id_=i, text=i), score=1.0 / n) for n, i in enumerate(ids, 1)
    ]


# "exact" is the keyword list's first place and absent from the vector list; "both" is 9th in
# each list.
VECTOR = ranking(*[f"v{i}" for i in range(8)], "both", "v9")
KEYWORD = ranking("exact", *[f"k{i}" for i in range(1, 8)], "both")


def ids(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


def test_a_first_place_in_one_list_survives_fusion():
    assert ids(fuse((VECTOR, KEYWORD), 2, FUSION)) == ["v0", "exact"]
    # agreement still counts: 9th in both lists beats 3rd in one
    assert ids(fuse((VECTOR, KEYWORD), 6, FUSION)) == ["v0", "exact", "v1", "k1", "both", "v2"]


def test_the_former_fusion_dropped_it():
    former = Fusion(depth=4, rrf_k=60.0)  # LlamaIndex's reciprocal_rerank, as used before
    assert ids(fuse((VECTOR, KEYWORD), 2, former)) == ["both", "v0"]


def test_fused_scores_are_weighted_reciprocal_ranks():
    fused = fuse((ranking("a", "b"), ranking("b")), 2, Fusion(rrf_k=5.0, keyword_weight=2.0))
    assert [(n.node.node_id, round(n.score, 4)) for n in fused] == [("b", 0.5667), ("a", 0.2)]


def test_ties_keep_the_vector_order():
    assert ids(fuse((ranking("a", "b"), ranking("c", "d")), 4, Fusion(rrf_k=5.0))) == [
        "a",
        "c",
        "b",
        "d",
    ]


def test_hybrid_query_keeps_the_keyword_first_place(catalog, tmp_path):
    from tests.helpers.documents import write_corpus

    kb = catalog.create(
        "fusion-kb", KnowledgeBaseSettings(chunking=ChunkingConfig(chunk_size=64, chunk_overlap=8))
    )
    kb.ingest(write_corpus(tmp_path / "docs", 6), progress=False)
    for code in ("ref004x03", "ref001x05", "ref005x00"):
        hits = kb.query(code, QueryOptions(top_k=2, mode="hybrid"))
        assert any(code in h.text for h in hits), code
