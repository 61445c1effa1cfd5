"""`hybrid eval app`'s parts on fixed answers: figures normalised, the labelled file read (and
refused line by line), answers scored, the voice model validated, the blind A/B sheet."""

from __future__ import annotations

import json
import re

import pytest

from hybrid.errors import UsageError
from hybrid.evaluation.ab_sheet import build_ab_sheet, write_ab_sheet
from hybrid.evaluation.answers import answer_correct, quantities
from hybrid.evaluation.labelled import read_cases
from hybrid.evaluation.report import write_report
from hybrid.evaluation.responders import AppReply
from hybrid.evaluation.scoring import grounding_quality, score_case, summarise
from hybrid.evaluation.voice import fit_voice_model
from tests.conftest import EXAMPLES


@pytest.mark.parametrize(
    ("gold", "answer"),
    [
        ("$412.6 million", "Revenue was $412.6 million."),
        ("$412.6 million", "We booked 412,600,000 dollars"),
        ("$412.6 million", "about $412.6m in total"),
        ("41.3%", "gross margin of 41.3 percent"),
        ("every 2 months", "Descale it every 2 months [1]."),
        ("1,350 watts", "It draws 1350 W."),
        ("$1.27 and $0.82", "EPS was $0.82 in 2024 and $1.27 in 2025"),
        ("Birch and Hollis", "Our auditor is Birch & Hollis LLP."),
        ("9:00 a.m. to 5:00 p.m.", "open 9 am to 5 pm on Saturdays"),
        ("$412.6 million", "Revenue was USD 412.6m."),
        ("€3.5 million", "It cost EUR 3.5 million."),
        ("every 2 months", "Descale every two months."),
        ("May 20, 2025", "It was released on 20 May 2025."),
    ],
)
def test_gold_answers_match_their_equivalent_forms(gold, answer):
    assert answer_correct([gold], answer)


@pytest.mark.parametrize(
    ("gold", "answer"),
    [
        ("41.3%", "a 17.5% increase in gross margin"),
        ("every 2 months", "descale every 1 week"),
        ("2 months", "every 2 weeks"),
        ("$138.9 million", "$1.1 billion, down from $1.2 billion"),
        ("$138.9 million", "$138.9 billion"),
        ("$1.27 and $0.82", "EPS was $1.27"),
        ("Daniel Whitcombe", "The chair is Margaret Okafor."),
        ("$412.6 million", "Revenue was EUR 412.6 million."),
        ("every 2 months", "Descale every two weeks."),
        ("May 20, 2025", "It was released on May 2, 2025."),
        ("2,310 units", "We shipped 2,130 units."),
    ],
)
def test_wrong_figures_units_and_spans_do_not_match(gold, answer):
    assert not answer_correct([gold], answer)


def test_quantities_carry_scaled_values_and_units():
    found = {(str(q.value), q.unit) for q in quantities("$1.1 billion, 18%, 12 kg and 3 weeks")}
    assert found == {("1.1E+9", "usd"), ("18", "%"), ("12", "kg"), ("3", "week")}


def write(tmp_path, *lines: str):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reader_names_file_and_line_of_each_kind_of_bad_input(tmp_path):
    good = '{"question": "Q?", "answers": ["1"]}'
    with pytest.raises(UsageError, match=r"q\.jsonl:2: not valid JSON"):
        read_cases(write(tmp_path, good, '{"question": '))
    with pytest.raises(UsageError, match=r"q\.jsonl:3: answers: Input should be a valid tuple"):
        read_cases(write(tmp_path, good, "", '{"question": "Q?", "answers": "12"}'))
    with pytest.raises(UsageError, match=r"q\.jsonl:1: an unanswerable case .* cannot list"):
        read_cases(write(tmp_path, '{"question": "Q?", "answerable": false, "answers": ["x"]}'))
    with pytest.raises(UsageError, match=r"q\.jsonl:1: messages\.0\.role"):
        read_cases(
            write(tmp_path, '{"question": "Q?", "messages": [{"role": "bot", "content": ""}]}')
        )
    with pytest.raises(UsageError, match=r"q\.jsonl:1: no labelled questions in the file"):
        read_cases(write(tmp_path, "", "  "))
    with pytest.raises(UsageError, match=r"no labelled questions match brand=acme"):
        read_cases(write(tmp_path, good), {"brand": "acme"})


def test_style_and_base_reply_readers_name_file_and_line(tmp_path):
    from hybrid.evaluation.voice import read_baseline, read_style_examples

    with pytest.raises(UsageError, match=r"missing\.jsonl: no such style data file"):
        read_style_examples([tmp_path / "missing.jsonl"])
    chat = '{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}'
    style = tmp_path / "style.jsonl"
    style.write_text(f"{chat}\n\n[1, 2]\n")
    with pytest.raises(UsageError, match=r"style\.jsonl:3: not a JSON object"):
        read_style_examples([style])
    style.write_text(f"{chat}\n{{oops\n")
    with pytest.raises(UsageError, match=r"style\.jsonl:2: not valid JSON"):
        read_style_examples([style])
    style.write_text(f"{chat}\n")
    assert [e.reply for e in read_style_examples([style])] == ["A"]
    base = tmp_path / "base.jsonl"
    base.write_text('{"reply": "Sure."}\n{"text": "x"}\n')
    with pytest.raises(UsageError, match=r'base\.jsonl:2: expected \{"reply": "\.\.\."\}'):
        read_baseline(base)
    base.write_text('{"reply": "Sure."}\n{"reply": null}\n')
    assert read_baseline(base) == ["Sure."]


def test_examples_labelled_sets_are_consistent_with_their_documents():
    """Every gold answer is in its source document; both kinds of new case are present."""
    docs = {
        "ceo-report-qa": [EXAMPLES / "ceo-report-qa" / "report_source.md"],
        "branded-chatbot": sorted((EXAMPLES / "branded-chatbot" / "brands").rglob("kb/*")),
    }
    for example, files in docs.items():
        cases = read_cases(EXAMPLES / example / "eval" / "questions.jsonl")
        texts = {f.name: f.read_text() for f in files}
        if example == "ceo-report-qa":
            texts = {"northwind-annual-report-2025.pdf": texts["report_source.md"]}
        answerable = [c for c in cases if c.answerable]
        assert all(c.answers for c in answerable), example
        for c in answerable:
            plain = re.sub(r"<[^>]+>|\*\*", " ", texts[c.source])
            assert answer_correct(c.answers, plain), (example, c.line, c.answers)
        assert sum(not c.answerable for c in cases) >= 3
        assert sum(c.multi_turn for c in cases) >= 2


def case(line: str):
    return read_cases_from(line)[0]


def read_cases_from(*lines: str):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "q.jsonl"
        path.write_text("\n".join(lines))
        return read_cases(path)


GOLD = '{"question": "Cash?", "answers": ["$138.9 million"], "source": "r.pdf", "page": 9}'
NONE = '{"question": "Banana bread?", "answerable": false}'


def notes(**extra):
    base = {"citations": [], "sources": [], "grounding": {"grounded": True}, "no_context": False}
    return {**base, **extra}


def test_a_case_is_scored_for_facts_citation_grounding_and_abstention():
    cite = {"file_name": "r.pdf", "page": 9}
    right = score_case(
        case(GOLD),
        AppReply("We held $138.9 million [1].", notes(citations=[cite], sources=[cite]), 0.5),
        "Not covered.",
    )
    assert (right.correct, right.cited_gold, right.given_gold, right.abstained) == (
        True,
        True,
        True,
        False,
    )
    other_page = {"file_name": "r.pdf", "page": 8}
    wrong = score_case(
        case(GOLD),
        AppReply(
            "$1.1 billion.",
            notes(sources=[other_page], grounding={"grounded": False}),
            0.5,
            {"prompt_tokens": 10, "completion_tokens": 4},
        ),
        "Not covered.",
    )
    assert (wrong.correct, wrong.cited_gold, wrong.given_gold, wrong.grounded) == (
        False,
        False,
        False,
        False,
    )
    abstained = score_case(case(NONE), AppReply("Not covered.", notes(), 0.1), "Not covered.")
    assert abstained.abstained and abstained.abstention_right and abstained.correct is None
    refused = score_case(case(GOLD), AppReply("", notes(no_context=True), 0.1), None)
    assert refused.abstained and not refused.abstention_right and refused.grounded is None


def test_summary_and_grounding_precision_recall():
    c = case(GOLD)
    flagged = notes(grounding={"grounded": False})
    replies = [
        AppReply("$138.9 million", notes(), 1.0, {"prompt_tokens": 5, "completion_tokens": 2}),
        AppReply("$1.1 billion", flagged, 1.0, {"prompt_tokens": 5, "completion_tokens": 2}),
        AppReply("$2 million", notes(), 2.0, {"prompt_tokens": 5, "completion_tokens": 4}),
        AppReply("$138.9 million", flagged, 2.0, {"prompt_tokens": 5, "completion_tokens": 4}),
    ]
    results = [score_case(c, r, None) for r in replies]
    g = grounding_quality(results)
    assert (g["precision"], g["recall"], g["flagged"], g["wrong"]) == (0.5, 0.5, 2, 2)
    s = summarise("app", results)
    assert s["correctness"] == {"rate": 0.5, "hits": 2, "n": 4}
    assert s["tokens"] == {"prompt": 20, "completion": 12, "completion_per_s": 2.0}
    assert s["latency_s"]["mean"] == 1.5


def fake_embed(texts):
    """A stand-in embedder: the share of words of each list (fast tests load no model)."""
    marks = {"sail", "harbour", "tide", "crew", "course"}
    return [
        [sum(w.strip(".,").lower() in marks for w in t.split()) / len(t.split()), 1.0]
        for t in texts
    ]


def test_voice_model_is_validated_on_held_out_replies():
    style = [
        f"We hold our course and trust the crew, tide or no tide, case {i}." for i in range(12)
    ]
    base = [f"As an AI assistant I can help you with question number {i}." for i in range(12)]
    model = fit_voice_model(style, base, embed=fake_embed, seed=1)
    v = model.validation
    assert v.auc == 1.0 and v.heldout_style == 3 and v.heldout_base == 3
    assert v.heldout_style_mean > 0.5 > v.heldout_base_mean
    high, low = model.score(["The crew keeps its course [1].", "As an AI I can help [2]."])
    assert high > 0.5 > low
    with pytest.raises(UsageError, match="at least 4 style replies"):
        fit_voice_model(style[:3], base, embed=fake_embed)


def test_closing_sentences_take_figure_free_last_sentences():
    from hybrid.evaluation.voice import closing_sentences

    replies = [
        "Revenue rose. We hold our course.",  # a digit-free reply: its last sentence
        "We shipped 1,240 robots. The tide turns.",  # holds a figure: skipped
        "One sentence only.",  # nothing to split off
        "First [1]. Then the crew keeps watch!",
    ]
    assert closing_sentences(replies) == ["We hold our course.", "Then the crew keeps watch!"]


def test_voice_anchor_pairs_score_answers_with_and_without_a_closing():
    from hybrid.evaluation.voice import anchor_pairs

    style = [f"We hold our course and trust the crew, tide or no tide, case {i}." for i in range(8)]
    base = [f"As an AI assistant I can help you with question number {i}." for i in range(8)]
    model = fit_voice_model(style, base, embed=fake_embed, seed=1)
    answers = ["Revenue was $412.6 million [1].", "Cash was $138.9 million."]
    pairs = anchor_pairs(model, answers, ["The crew holds its course, tide or no tide."])
    assert len(pairs) == 2 and all(wrapped > plain for wrapped, plain in pairs)
    assert anchor_pairs(model, answers, []) == []


def test_ab_sheet_is_blind_seeded_and_keyed(tmp_path):
    questions = [
        {"id": i, "question": f"Q{i} <b>?", "answers": {"ceo": f"ceo {i}", "base": f"base {i}"}}
        for i in range(1, 21)
    ]
    html, key = build_ab_sheet(questions, "ceo", "base", seed=7)
    again, same_key = build_ab_sheet(questions, "ceo", "base", seed=7)
    assert html == again and key == same_key
    orders = [v["A"] for v in key["questions"].values()]
    assert 0 < orders.count("ceo") < 20  # shuffled, not always the same side
    assert "ceo" not in re.sub(r"ceo \d+", "", html) and "base" not in re.sub(r"base \d+", "", html)
    assert "Q1 &lt;b&gt;?" in html and "src=" not in html and "http" not in html
    assert "Show my ratings" in html
    for qid, sides in key["questions"].items():
        a_block = html.split(f'id="q{qid}"')[1].split("<b>B</b>")[0]
        assert f"{sides['A']} {qid}<" in a_block
    sheet, key_file = write_ab_sheet(tmp_path, questions, "ceo", "base", seed=7)
    assert json.loads(key_file.read_text()) == key and sheet.read_text() == html


def test_report_folder_has_markdown_json_and_chart(tmp_path):
    results = [score_case(case(GOLD), AppReply("$138.9 million", notes(), 1.0), None)]
    report = {
        "settings": {
            "apps": ["a"],
            "questions_file": "q.jsonl",
            "cases": 1,
            "only": {},
            "mode": "gateway",
            "sampling": {"temperature": 0},
        },
        "voice_validation": None,
        "summaries": [summarise("a", results)],
        "results": {"a": [r.to_dict() for r in results]},
    }
    paths = write_report(report, tmp_path / "out")
    md = paths["markdown"].read_text()
    assert "| answer correct | 100% (1/1) |" in md and "| 1 | Cash? | ✓: $138.9 million |" in md
    assert json.loads(paths["json"].read_text())["summaries"][0]["app"] == "a"
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ceo_voice_model_separates_held_out_replies_with_real_embeddings():
    """The committed CEO set: Margaret Okafor's replies vs SmolLM2's own answers to the same
    prompts (bench/style_baseline.py), on the real MiniLM embedder."""
    from hybrid.evaluation.voice import read_baseline, read_style_examples, style_files

    ceo = EXAMPLES / "ceo-report-qa"
    style = [e.reply for e in read_style_examples(style_files(ceo / "train.yaml"))]
    base = read_baseline(ceo / "eval" / "base_replies.jsonl")
    assert len(style) == 120 and len(base) == 60
    v = fit_voice_model(style, base).validation  # measured: AUC 0.993, means 0.70 vs 0.31
    assert (v.heldout_style, v.heldout_base) == (30, 15)
    assert v.auc >= 0.95, v
    assert v.heldout_style_mean - v.heldout_base_mean >= 0.25, v


def test_ceo_voice_anchor_is_positive_on_fact_answers_with_real_embeddings():
    """The anchor's premise on the real classifier: a plain fact answer with one of her
    closing sentences appended scores higher (measured on the base app's 68 answers: 0.42 ->
    0.51), and much lower than her own replies, which is why the anchor is needed."""
    from hybrid.evaluation.voice import (
        anchor_pairs,
        closing_sentences,
        read_baseline,
        read_style_examples,
        style_files,
    )

    ceo = EXAMPLES / "ceo-report-qa"
    style = [e.reply for e in read_style_examples(style_files(ceo / "train.yaml"))]
    model = fit_voice_model(style, read_baseline(ceo / "eval" / "base_replies.jsonl"))
    closings = closing_sentences(style)
    assert len(closings) >= 60
    facts = [
        "Northwind's total revenue in 2025 was $412.6 million [1].",
        "Gross margin was 41.3% in 2025, up from 39.8% in 2024 [2].",
        "Cash and equivalents stood at $138.9 million at year end [1].",
        "The company employed 1,864 people at December 31, 2025 [1].",
        "Scope 1 and 2 emissions were 8,740 tonnes of CO2 equivalent [2].",
        "The board met 11 times in 2025 [1].",
    ]
    pairs = anchor_pairs(model, facts, closings)
    wrapped = sum(w for w, _ in pairs) / len(pairs)
    plain = sum(p for _, p in pairs) / len(pairs)
    assert wrapped - plain >= 0.03, (wrapped, plain)
    assert plain < model.validation.heldout_style_mean - 0.15
