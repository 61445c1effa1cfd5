"""The KPI-card example (examples/report-kpi-cards): its data are what its checked facts build,
its held-out cards are valid and never trained on, and (vllm tier) `run.py --quick` runs end to
end on the tiny model: training, serving, both apps as configured (their
schema enforced at decode time), with response_format text and with json_schema."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from finetune.data import check_dataset, load_dataset
from hybrid.apps.answer_schema import AnswerSchema
from hybrid.apps.spec import load_app_spec
from tests.conftest import EXAMPLES, REPO

HERE = EXAMPLES / "report-kpi-cards"
SMOKE_TOKENS = 24
"""max_tokens of the quick run's answers here: random weights never stop, so every answer is
cut by max_tokens; greedy, so each is the first tokens of what the example's 200 would give
(the card's opening brace included), for an eighth of the decoding."""


def make_dataset():
    spec = importlib.util.spec_from_file_location("kpi_make_dataset", HERE / "make_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_committed_data_are_what_the_checked_facts_build():
    built = make_dataset().build()
    for path, text in built.items():
        assert path.read_text(encoding="utf-8") == text, f"{path}: run make_dataset.py"
    assert 100 <= len(rows(HERE / "data" / "cards.jsonl")) <= 500


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"figure": "$412.7 million"}, "figure '$412.7 million' is not in its evidence"),
        ({"unit": "%"}, "figure '$412.6 million' is in USD million, not '%'"),
        ({"change": "+19% vs FY2024"}, "change '+19% vs FY2024': 19 is not in"),
        ({"evidence": "Total revenue rose 18% to $412.6 billion"}, "on pages [], not on exactly"),
    ],
)
def test_a_fact_the_report_does_not_support_is_refused(change, problem):
    module = make_dataset()
    fact = {
        "metric": "Total revenue",
        "figure": "$412.6 million",
        "unit": "USD million",
        "period": "FY2025",
        "change": "+18% vs FY2024",
        "evidence": "Total revenue rose 18% to $412.6 million",
    }
    pages = module.page_texts()
    card, _page, _ = module.build_card(fact, pages)
    assert (card["value"], card["source_page"]) == (412.6, 8)
    with pytest.raises(ValueError, match=re.escape(problem)):
        module.build_card({**fact, **change}, pages)


def test_training_set_passes_the_data_check_and_holds_out_the_eval_metrics():
    train = rows(HERE / "data" / "cards.jsonl")
    report = check_dataset(load_dataset([HERE / "data" / "cards.jsonl"]), None, max_length=1024)
    assert report.ok, report.to_text()
    spec = load_app_spec(HERE / "apps" / "kpi-cards.yaml")
    schema = AnswerSchema(spec.answer_schema)
    system = spec.prompt_template.split("Passages:")[0].format(persona=spec.persona).strip()
    assert {r["system"] for r in train} == {system}  # the app's own instructions are trained
    assert all(r["input"].startswith("[1] (northwind-annual-report-2025.pdf, p. ") for r in train)
    assert all(schema.check(r["output"]).valid for r in train)
    gold = rows(HERE / "eval" / "questions.jsonl")
    assert len(gold) >= 20
    assert all(schema.check(json.dumps(g["card"])).valid for g in gold)
    trained = {json.loads(r["output"])["metric"] for r in train}
    assert trained.isdisjoint({g["card"]["metric"] for g in gold})
    assert all(r["instruction"] not in {g["question"] for g in gold} for r in train)


@pytest.mark.vllm
@pytest.mark.timeout(2400)
def test_quick_run_on_the_tiny_model(tmp_path):
    from tests.helpers.tiny_llama import build_tiny_llama

    model = build_tiny_llama(tmp_path / "tiny", max_position_embeddings=2048)
    work = tmp_path / "work"
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            "--quick",
            "--model",
            str(model),
            "--work-dir",
            str(work),
            "--max-tokens",
            str(SMOKE_TOKENS),
        ],
        capture_output=True,
        text=True,
        timeout=2300,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| kpi-cards | the app's answer_schema |" in result.stdout
    measured = json.loads((work / "kpi_cards.json").read_text())
    cells = {(c["app"], c["mode"]): c for c in measured["cells"]}
    assert set(cells) == {
        (a, m) for a in ("kpi-cards", "kpi-base") for m in ("app", "text", "json_schema")
    }
    schema = AnswerSchema(load_app_spec(HERE / "apps" / "kpi-cards.yaml").answer_schema)
    for key, answers in measured["answers"].items():
        assert len(answers) == cells[tuple(key.split("/"))]["questions"] >= 20
        for row in answers:  # the app's verdict is the schema's, answer by answer
            assert row["answer_schema"] == schema.check(row["answer"]).to_dict(), row
            assert 0 < row["completion_tokens"] <= SMOKE_TOKENS, row
            if key.endswith(("/app", "/json_schema")):
                # the engine decoded under the schema (the app's enforce_answer_schema when the
                # client asked for no shape, else the client's own): with random weights the
                # answer is mostly cut by max_tokens, yet it opens the object
                assert row["answer"].startswith("{"), row
                if row["finish_reason"] == "stop":
                    assert row["valid"], row


def test_fields_are_scored_against_the_gold_card_strictly():
    from examples.kpi_cards import field_right, parse_card

    gold = rows(HERE / "eval" / "questions.jsonl")[1]["card"]  # gross margin, 41.3 %, FY2025
    card = parse_card(json.dumps({**gold, "value": 41.30, "unit": "%", "period": "FY2025"}))
    assert all(field_right(card, gold, name) for name in ("value", "unit", "period"))
    assert not field_right({**gold, "value": "41.3"}, gold, "value")  # a string is no number
    assert not field_right({**gold, "value": 41.2}, gold, "value")
    assert not field_right({**gold, "period": "2025"}, gold, "period")
    assert not field_right({**gold, "source_page": True}, gold, "source_page")
    assert not field_right(parse_card("Gross margin was 41.3%."), gold, "value")


def test_a_fact_with_a_value_split_by_a_comma_is_refused(tmp_path, monkeypatch):
    module = make_dataset()
    facts = tmp_path / "facts.yaml"
    facts.write_text(
        "facts:\n  - {metric: Selling, general and administrative expenses, figure: '$71.9 "
        "million', unit: USD million, period: FY2025, change: null, evidence: 'Selling, general "
        "and administrative expenses were $71.9 million', split: train}\n"
    )
    monkeypatch.setattr(module, "FACTS", facts)
    with pytest.raises(ValueError, match=r"fact 1: keys .*'general and administrative expenses'"):
        module.build()
