from __future__ import annotations

import pytest

from retrieval import ChunkingConfig, KnowledgeBaseSettings, RetrievalError
from retrieval.evaluation import LabelledQuestion, evaluate, is_relevant, load_questions
from retrieval.search import Citation, Hit


def hit(text: str, file_name: str = "r.pdf", page: int | None = 2) -> Hit:
    return Hit("id", 0.5, text, Citation("/x/" + file_name, file_name, page, 0, len(text)), {})


def test_relevance_needs_file_page_and_evidence():
    q = LabelledQuestion(question="?", source="r.pdf", page=2, evidence="revenue rose 18%")
    assert is_relevant(hit("In 2025  revenue\nrose 18% to 412."), q)
    assert not is_relevant(hit("revenue rose 18%", page=3), q)
    assert not is_relevant(hit("revenue rose 18%", file_name="other.pdf"), q)
    assert not is_relevant(hit("costs fell"), q)
    # evidence straddling a chunk boundary: half or more of it in the chunk counts
    assert is_relevant(hit("... and revenue rose"), q)
    assert not is_relevant(hit("... and rev"), q)


def test_bad_question_lines_are_all_reported(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"question": "a", "source": "f", "evidence": "e"}\nnot json\n{"question": "b"}\n'
    )
    with pytest.raises(RetrievalError) as info:
        load_questions(path)
    message = str(info.value)
    assert "2 bad line(s)" in message and "line 2" in message and "line 3" in message


def test_app_eval_lines_without_a_single_query_to_check_are_skipped(tmp_path):
    """Unanswerable questions and follow-ups (prior `messages`) of `hybrid eval app` share the
    file; they have no passage to find for the question alone."""
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"question": "a", "source": "f", "evidence": "e", "answers": ["1"]}\n'
        '{"question": "banana bread?", "answerable": false}\n'
        '{"messages": [{"role": "user", "content": "a"}], "question": "and before?", '
        '"source": "f", "evidence": "e"}\n'
    )
    assert [q.question for q in load_questions(path)] == ["a"]


def test_evaluate_scores_a_small_kb(catalog, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The refund window is 30 days.\n\nThe warranty lasts two years.")
    (docs / "b.md").write_text("Shipping costs 4.99 dollars and takes five days.")
    kb = catalog.create(
        "evalkb", KnowledgeBaseSettings(chunking=ChunkingConfig(chunk_size=16, chunk_overlap=2))
    )
    kb.ingest([docs], progress=False)
    questions = [
        LabelledQuestion(
            question="How long is the warranty?", source="a.md", evidence="warranty lasts two years"
        ),
        LabelledQuestion(
            question="What does shipping cost?", source="b.md", evidence="Shipping costs 4.99"
        ),
        LabelledQuestion(
            question="Is there a loyalty program?", source="c.md", evidence="never there"
        ),
    ]
    result = evaluate(kb, questions, ks=(1, 3), depth=3)
    for scores in result.modes:
        assert scores.hit_at[3] == pytest.approx(2 / 3, abs=1e-3)
        assert scores.misses == ["Is there a loyalty program?"]
    assert "| vector | 3 |" in result.table()
