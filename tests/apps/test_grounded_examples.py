"""Grounded-voice training examples (counterfactual RAFT): statements found, figures perturbed
consistently, answers copy the statement with its [n] citation in the style replies' voice, the
labelled evaluation questions never asked, the training config's `context:` options read."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from finetune.data import load_dataset
from finetune.data.schema import Example, Message
from hybrid.apps.grounded_examples import (
    FIGURE,
    FigurePerturber,
    figure_statements,
    grounded_examples,
    load_questions,
    normalise_question,
    text_units,
)
from hybrid.apps.prompt import Passage
from hybrid.cli import main
from hybrid.config import load_context_training
from hybrid.errors import ConfigError
from tests.helpers.report_passages import CEO, ceo_app_spec, passages_of, report_passages
from tests.helpers.training import write_chats


@pytest.fixture(scope="module")
def report() -> list[Passage]:
    return report_passages()


@pytest.fixture(scope="module")
def spec():
    return ceo_app_spec()


@pytest.fixture(scope="module")
def style() -> list[Example]:
    return load_dataset([CEO / "style" / "qa.jsonl"])


def figures(text: str) -> list[str]:
    return [m.group(0) for m in FIGURE.finditer(text)]


def test_statements_carry_a_figure_and_their_subject(report):
    found = {s.text: s for s in figure_statements(report)}
    revenue = found["Total revenue rose 18% to $412.6 million, from $349.7 million in 2024."]
    assert (revenue.subject, revenue.verb) == ("total revenue", "rose")
    cash = next(s for t, s in found.items() if t.startswith("Cash and cash equivalents were"))
    assert cash.subject == "cash and cash equivalents"
    assert all(FIGURE.search(s.text) for s in found.values())
    # sentences without figures, or with a pronoun subject, are not statements
    assert not any(s.subject.split()[0] in {"it", "we", "they"} for s in found.values())
    assert len(found) >= 30


def test_perturbation_changes_every_figure_consistently():
    perturb = FigurePerturber(random.Random(3))
    text = "Revenue rose 18% to $412.6 million, from $349.7 million in 2024 (launched March 11)."
    once, again = perturb(text), perturb("It was $412.6 million in 2024.")
    old, new = figures(text), figures(once)
    assert len(old) == len(new) and all(a != b for a, b in zip(old, new, strict=True))
    assert perturb.mapping[("412.6", "amount")] in again  # same figure, same replacement
    year = int(new[old.index("2024")])
    assert year == 2024 + perturb.year_shift and 3 <= abs(perturb.year_shift) <= 9
    assert re.fullmatch(r"\d+\.\d", new[old.index("412.6")])  # same decimals
    assert 1 <= int(new[-1]) <= 28  # the day of a month stays a day
    # names with digits (model numbers, times) and single digits stay
    kept = "The Tern AMR-600 opened at 10:00 with 3 robots."
    assert perturb(kept) == kept


def test_percentages_stay_below_one_hundred():
    for seed in range(50):
        out = FigurePerturber(random.Random(seed))("a success rate of 99.2%")
        assert float(figures(out)[0]) < 100


def test_examples_copy_the_perturbed_statement_with_its_citation(report, spec, style):
    examples = grounded_examples(report, spec, style, count=40, seed=7)
    assert len(examples) == 40
    originals = " ".join(" ".join(p.text.split()) for p in report)
    openings_or_closings = {m.content for e in style for m in e.messages if m.role == "assistant"}
    for example in examples:
        system, user, assistant = example.messages
        assert (system.role, user.role, assistant.role) == ("system", "user", "assistant")
        assert system.content.startswith(spec.persona)
        cited = re.search(r"\[(\d+)\]", assistant.content)
        assert cited, assistant.content
        # the copied statement is in the cited passage of the prompt, word for word
        passage = system.content.split(f"[{cited.group(1)}] (")[1].split("\n\n[")[0]
        passage = " ".join(passage.split())
        parts = re.split(r"(?<=[.!?]) ", assistant.content[: cited.start()].strip())
        copied = [" ".join(parts[-k:]) for k in range(1, len(parts) + 1)]
        cells = [re.fullmatch(r"(.+?)(?: \((.+?)\))?: (.+)", c) for c in copied]
        cell = next((m for m in cells if m and all(g in passage for g in m.groups() if g)), None)
        if cell is not None and "|" in passage:  # a table cell: row, column and value copied
            assert FIGURE.search(cell.group(3)), assistant.content
            continue
        statement = max((c for c in copied if c in passage), key=len, default="")
        assert len(statement) >= 20 and FIGURE.search(statement), (assistant.content, passage)
        # with its figures perturbed: not a sentence of the report
        assert statement not in originals, statement
        # the voice: a sentence of a style reply follows
        tail = assistant.content[cited.end() :].strip(". ")
        assert any(tail in reply for reply in openings_or_closings), tail
    assert len({e.messages[1].content for e in examples}) > 30  # varied questions


def test_answers_state_the_fact_first_unless_openings_are_asked_for(report, spec, style):
    def first_sentence_has_a_figure(example) -> bool:
        first = re.split(r"(?<=[.!?]) ", example.messages[2].content)[0]
        return bool(FIGURE.search(first))

    default = grounded_examples(report, spec, style, count=30, seed=9)
    assert all(first_sentence_has_a_figure(e) for e in default)
    opened = grounded_examples(report, spec, style, count=30, seed=9, opening_share=1.0)
    openers = [e for e in opened if not first_sentence_has_a_figure(e)]
    assert len(openers) >= 20  # a figure-free sentence of the voice comes first


def test_distractors_follow_the_apps_top_k(report, spec):
    examples = grounded_examples(report, spec, count=10, seed=1, distractors=None)
    for example in examples:
        shown = re.findall(r"^\[(\d+)\] \(", example.messages[0].content, re.M)
        assert shown == [str(n) for n in range(1, spec.retrieval.top_k + 1)]
    three = grounded_examples(report, spec, count=5, seed=1, distractors=2)
    assert all("\n[3] (" in e.messages[0].content for e in three)


def test_eval_questions_never_appear_in_the_generated_set(report, spec, style):
    held_out = load_questions([CEO / "eval" / "questions.jsonl"])
    assert len(held_out) >= 30
    examples = grounded_examples(report, spec, style, count=200, seed=0, exclude=held_out)
    asked = {
        normalise_question(m.content) for e in examples for m in e.messages if m.role == "user"
    }
    assert asked and not asked & {normalise_question(q) for q in held_out}


def test_exclusion_removes_a_question_the_templates_would_ask(spec):
    passages = passages_of(
        "Net income was $34.8 million, compared with $22.1 million in 2024, a strong year.\n\n"
        "Inventory was $68.2 million at year end, and days on hand fell from 112 to 96 overall."
    )
    made = grounded_examples(passages, spec, count=30, seed=2)
    asked = sorted({e.messages[1].content for e in made})
    assert len(asked) >= 4
    # the same question in other case and punctuation is kept out
    kept = grounded_examples(passages, spec, count=30, seed=2, exclude=[asked[0].upper() + " "])
    assert asked[0] not in {e.messages[1].content for e in kept}
    assert len(kept) == 30


def test_no_statements_no_examples(spec):
    plain = passages_of("Our robots are careful and our people are kind to every customer we have.")
    assert grounded_examples(plain, spec, count=10) == []


def test_passages_are_shown_as_the_app_serves_them(report, spec):
    """`served` (each chunk widened with its neighbours at serve time) replaces what an example
    shows; statements still come from the chunks and the answer copies one of them."""
    asked: list[int] = []

    def served(indices):
        asked.extend(indices)
        return [f"Before it, 7 robots shipped. {report[i].text} After it, 9 more." for i in indices]

    examples = grounded_examples(report, spec, count=12, seed=5, served=served)
    assert len(examples) == 12 and len(asked) == len(set(asked))  # each passage asked once
    for example in examples:
        parts = re.split(r"\n\[(\d+)\] \([^)]*\)\n", example.messages[0].content)
        shown = dict(zip(parts[1::2], parts[2::2], strict=True))
        assert shown and all(
            p.startswith("Before it, ") and p.rstrip().endswith(" more.") for p in shown.values()
        )
        (number,) = re.findall(r"\[(\d+)\]", example.messages[2].content)
        copied = re.sub(r" \[\d+\]", "", example.messages[2].content)
        assert figures(copied) and set(figures(copied)) <= set(figures(shown[number]))
    # a served text that drops the chunk's own words is not trusted
    broken = grounded_examples(report, spec, count=3, seed=5, served=lambda ix: ["x"] * len(ix))
    assert all("\nx" not in e.messages[0].content for e in broken)


def test_a_tight_budget_narrows_the_passages_around_the_statement(report, spec, tiny_llama_dir):
    from hybrid.apps.budget import PromptBudget

    def tokens(example):
        return budget.count([{"role": m.role, "content": m.content} for m in example.messages])

    budget = PromptBudget(tiny_llama_dir, 10**6)  # the tiny tokenizer: ~800 tokens per example
    full = grounded_examples(report, spec, count=10, seed=4)
    limit = min(tokens(e) for e in full) - 50
    budget = PromptBudget(tiny_llama_dir, limit)
    narrowed = grounded_examples(report, spec, count=10, seed=4, budget=budget)
    assert len(narrowed) == 10
    for example in narrowed:
        assert tokens(example) <= limit
        cited = re.search(r"\[(\d+)\]", example.messages[2].content)
        assert cited and f"[{cited.group(1)}] (" in example.messages[0].content
    # distractors are narrowed too, not only dropped
    assert any("\n[2] (" in e.messages[0].content for e in narrowed)


def test_context_section_reads_grounded_options(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "q.jsonl").write_text(json.dumps({"question": "What?"}) + "\n")
    path = tmp_path / "train.yaml"
    path.write_text(
        "context:\n  app: app.yaml\n  grounded_examples: 50\n  holdout: [eval/q.jsonl]\n"
    )
    context = load_context_training(path)
    assert context.grounded_examples == 50
    assert context.holdout == (tmp_path / "eval" / "q.jsonl",)
    assert load_questions(list(context.holdout)) == ["What?"]
    path.write_text("context:\n  app: app.yaml\n  grounded_examples: -1\n")
    with pytest.raises(ConfigError, match="grounded_examples"):
        load_context_training(path)
    path.write_text("context:\n  app: app.yaml\n  train_style_data: false\n")
    with pytest.raises(ConfigError, match="grounded-voice examples alone; set grounded_examples"):
        load_context_training(path)


def test_bad_holdout_files_get_a_one_line_error(tmp_path):
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(ConfigError, match=f"^context.holdout: {missing}: no such labelled"):
        load_questions([missing])
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "ok"}\n{"nope": 1}\n')
    with pytest.raises(ConfigError, match=r"q\.jsonl:2: .*question"):
        load_questions([bad])
    bad.write_text("not json\n")
    with pytest.raises(ConfigError, match=r"q\.jsonl:1: not valid JSON"):
        load_questions([bad])
    bad.write_text("\n")
    with pytest.raises(ConfigError, match=r"q\.jsonl:1: no labelled questions"):
        load_questions([bad])


def test_style_replies_with_figures_give_no_voice_lines(report, spec):
    noisy = [
        Example(
            "s:1",
            (
                Message("user", "How are you?"),
                Message("assistant", "We sold 5,000 units. That is 12% more."),
            ),
        )
    ]
    for example in grounded_examples(report, spec, noisy, count=5, seed=0):
        assert example.messages[2].content.rstrip().endswith(("].", "]!", "]?"))


def test_example_origin_names_the_passage(report, spec):
    (example,) = grounded_examples(report, spec, count=1, seed=0)
    assert example.origin.startswith("grounded:report.pdf")
    assert Path(CEO / "report_source.md").exists()


def test_knowledge_base_passages_are_every_chunk_with_its_source(catalog, tmp_path):
    from hybrid.apps.grounded_examples import knowledge_base_passages

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "prices.md").write_text(
        "# Prices\n\nThe BB-100 costs $249.00 and the BB-200 Pro costs $449.00 in the US.\n"
    )
    kb = catalog.create("grounded-kb")
    kb.ingest([docs], progress=False)
    passages = knowledge_base_passages(kb)
    assert [p.number for p in passages] == list(range(1, len(passages) + 1))
    assert {p.file_name for p in passages} == {"prices.md"}
    assert "$249.00" in " ".join(p.text for p in passages)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("train_style_data", "abstaining", "trained"), [(True, 0, 12), (False, 2, 8)]
)
def test_hybrid_train_adds_grounded_examples_from_the_apps_knowledge_base(
    tmp_path, tiny_llama_dir, train_style_data, abstaining, trained
):
    import subprocess
    import sys

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "facts.md").write_text(
        "# Year\n\nTotal revenue rose 18% to $412.6 million, from $349.7 million in 2024.\n\n"
        "Net income was $34.8 million, compared with $22.1 million in 2024.\n"
    )
    (tmp_path / "hybrid.yaml").write_text(f"store: {{mode: embedded, path: {tmp_path / 'db'}}}\n")
    (tmp_path / "app.yaml").write_text(
        "name: shop\nknowledge_base: facts\npersona: You are the CEO.\n"
    )
    reply = "We keep our promises. The wind changes; the destination does not."
    write_chats(tmp_path / "style.jsonl", [(f"Q{i}?", reply) for i in range(6)])
    (tmp_path / "q.jsonl").write_text(json.dumps({"question": "What was net income?"}) + "\n")
    (tmp_path / "train.yaml").write_text(
        f"base_model: {tiny_llama_dir}\ndata: [style.jsonl]\noutput_dir: out\nmax_steps: 1\n"
        "batch_size: 2\ngradient_accumulation: 1\nmax_length: 512\nvalidation_share: 0\n"
        "context: {app: app.yaml, share: 0.5, grounded_examples: 6, holdout: [q.jsonl], "
        f"train_style_data: {str(train_style_data).lower()}, abstention_examples: {abstaining}}}\n"
    )
    config = ["--config", str(tmp_path / "hybrid.yaml")]
    # the knowledge base in this process (the same CLI; a subprocess per step cost ~5 s), the
    # training under test as a user runs it
    assert main([*config, "kb", "create", "facts"]) == 0
    assert main([*config, "kb", "ingest", "facts", str(docs), "-q"]) == 0
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "hybrid.cli", *config, "train", str(tmp_path / "train.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "6 grounded-voice examples added" in result.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (f"{abstaining} abstention examples added" in result.stdout) == bool(abstaining)
    # 6 replies + 6 grounded; without the style data trained, the grounded (+ abstention) alone
    assert metrics["final"]["train_examples"] == trained


PRODUCT_SHEET = """# BrewBird BB-200 Pro

The big bird of our flock.

## At a glance

| Feature | BB-200 Pro |
|---|---|
| Price | $449.00 |
| Water tank | 2.0 liters, removable from the side |

- **Pump:** 15 bar
- **Grinder:** conical steel burrs with 18 grind settings. Adjust it while it runs.

## Where we ship
We ship to all 50 US states and to Canada."""


def test_product_documents_give_fields_with_what_they_belong_to():
    """Tables, `Key: value` items and plain `Key: value` lines are statements of their own,
    about the document's title; a heading never becomes part of a sentence."""
    passages = [Passage(1, PRODUCT_SHEET, "bb-200-pro.md", "bb-200-pro.md", None, 0, 400, 0.0)]
    found = {s.text: s for s in figure_statements(passages)}
    tank = found["Water tank (BB-200 Pro): 2.0 liters, removable from the side."]
    assert (tank.subject, tank.entity) == ("the water tank (BB-200 Pro)", "BrewBird BB-200 Pro")
    assert tank.anchor == "| Water tank | 2.0 liters, removable from the side |"
    grinder = found["Grinder: conical steel burrs with 18 grind settings."]
    assert (grinder.heading, grinder.entity) == ("At a glance", "BrewBird BB-200 Pro")
    units = {u.text: u for u in text_units(PRODUCT_SHEET)}
    shipping = units["We ship to all 50 US states and to Canada."]  # not "Where we ship We ..."
    assert (shipping.heading, shipping.key) == ("Where we ship", "")
    assert not any("#" in t or "Where we ship" in t for t in units)
    # a plain-text sheet (upper-case headings, Key: value lines); a chunk from its middle
    sheet = (
        "KETTLE & CO - THE K-CLASSIC\n\nSPECIFICATION\n\nPower: 1,450 watts, 230 V\nWeight: 9.2 kg"
    )
    middle = "| Weight | 7.8 kg |\n| Colors | Raven |"  # starts inside a table: no header
    more = [
        Passage(1, sheet, "k.txt", "k.txt", None, 0, 90, 0.0),
        Passage(2, middle, "bb.md", "bb.md", None, 500, 540, 0.0),
    ]
    by_text = {s.text: s for s in figure_statements(more)}
    power = by_text["Power: 1,450 watts, 230 V."]
    assert (power.entity, power.heading) == ("Kettle & Co - The K-Classic", "Specification")
    assert by_text["Weight: 7.8 kg."].subject == "the weight"


def test_field_examples_ask_about_the_field_and_copy_it(spec):
    passages = [Passage(1, PRODUCT_SHEET, "bb-200-pro.md", "bb-200-pro.md", None, 0, 400, 0.0)]
    examples = grounded_examples(passages, spec, count=12, seed=2, distractors=0)
    fields = [e for e in examples if "(BB-200 Pro)" in e.messages[2].content]
    assert fields, [e.messages[2].content for e in examples]
    for example in fields:
        question, answer = example.messages[1].content, example.messages[2].content
        assert "BB-200 Pro" in question and ("price" in question or "water tank" in question)
        value = re.search(r"\): (.+) \[1\]", answer).group(1)
        assert value.rstrip(".") in example.messages[0].content  # copied from the prompt
        assert value not in PRODUCT_SHEET  # its figures perturbed
