"""App specs (every problem at once), the prompt layout, citations and the grounding check."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.apps.grounding import check_grounding, citations, names_in, numbers_in
from hybrid.apps.prompt import Passage, build_messages, format_context
from hybrid.apps.spec import AppSpec, load_app_spec, load_app_specs
from hybrid.errors import ConfigError


def passage(number: int, text: str, page: int | None = 3) -> Passage:
    return Passage(number, text, "report.pdf", "/docs/report.pdf", page, 0, len(text), 0.8)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_spec_problem_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        "bad.yaml",
        "name: Bad Name\npersona: ''\nprompt_template: 'Hi {persona} {question}'\n"
        "retrieval: {top_k: 0}\nbranding: {color: red}\nsurprise: 1\n",
    )
    with pytest.raises(ConfigError) as info:
        load_app_spec(path)
    message = str(info.value)
    for expected in (
        "name: use 2-64 characters",
        "knowledge_base: Field required",
        "persona: persona is empty",
        "prompt_template: prompt_template uses unknown field(s) ['question']",
        "retrieval.top_k",
        "branding.color",
        "surprise: Extra inputs are not permitted",
    ):
        assert expected in message
    assert message.startswith(f"{path}: 7 problem(s)")


def test_spec_file_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="app file not found"):
        load_app_spec(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="line 2: not valid YAML"):
        load_app_spec(write(tmp_path, "broken.yaml", "name: [unclosed\n"))
    good = "name: same\nknowledge_base: kb1\npersona: You help.\n"
    paths = [write(tmp_path, "a.yaml", good), write(tmp_path, "b.yaml", good)]
    with pytest.raises(ConfigError, match="app name 'same' is used by 2 files"):
        load_app_specs(paths)
    with pytest.raises(ConfigError, match=r"has no \{context\}"):
        load_app_spec(write(tmp_path, "t.yaml", good + "prompt_template: '{persona}'\n"))


def test_prompt_numbers_passages_and_merges_client_system_messages():
    spec = AppSpec(name="acme", knowledge_base="kb1", persona="You are Pip.")
    passages = [passage(1, "Refunds within 30 days."), passage(2, "Ships in 2 days.", page=None)]
    assert format_context(passages) == (
        "[1] (report.pdf, p. 3)\nRefunds within 30 days.\n\n[2] (report.pdf)\nShips in 2 days."
    )
    messages = build_messages(
        spec,
        passages,
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Q?"}],
    )
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert system.startswith("You are Pip.\n\nAnswer the user's question using only")
    assert "[1] (report.pdf, p. 3)\nRefunds within 30 days." in system
    assert system.endswith("Answer in French.")
    empty = build_messages(spec, [], [{"role": "user", "content": "Q?"}])
    assert "(no passages: the sources do not cover this question)" in empty[0]["content"]


def test_numbers_and_names_are_normalised():
    assert numbers_in("Revenue was $412.6 million, up 18% from $349.70 [2] in 2024.") == {
        "412.6",
        "18",
        "349.7",
        "2024",
    }
    assert numbers_in("It has 3 steps and 1,204.50 units") == {"1204.5"}
    assert numbers_in("A 5-year warranty, 2 million units, 7% up, descale every 4 weeks") == {
        "5",
        "2",
        "7",
        "4",
    }
    assert names_in("The Kettle Classic and Margaret Okafor met. Dear Fellow Owners") == {
        "Kettle Classic",
        "Margaret Okafor",
        "Fellow Owners",
    }


def test_grounding_flags_figures_and_names_found_in_no_passage():
    passages = [passage(1, "Total revenue rose 18% to $412.6 million in 2025.")]
    good = check_grounding("Revenue reached $412.6 million [1], up 18%.", passages)
    assert good.grounded and good.checked == 2
    bad = check_grounding(
        "Revenue reached $512.6 million, says Margaret Okafor [4].",
        passages,
        question="What did revenue do?",
    )
    assert not bad.grounded
    assert bad.ungrounded == [
        {"text": "512.6", "kind": "number", "reason": "no passage gives $512.6 million"},
        {"text": "Margaret Okafor", "kind": "name", "reason": "no passage names it"},
    ]
    assert bad.unknown_citations == [4]
    by_persona = check_grounding(
        "Onward, says Margaret Okafor.", [], persona="You are Margaret Okafor"
    )
    assert by_persona.grounded


def test_citations_by_marker_and_by_matching_figures():
    passages = [
        passage(1, "Cash was $138.9 million."),
        passage(2, "Headcount was 1,450 people.", page=9),
        passage(3, "Nothing relevant."),
    ]
    cited, unknown = citations(
        "In 2025 we held $138.9 million [2] and 1,450 staff. See [7].",
        [*passages[:2], passage(3, "Nothing relevant happened in 2025.")],
    )
    assert [(c["index"], c["how"]) for c in cited] == [(1, "match"), (2, "marker")]
    assert cited[1]["page"] == 9 and cited[1]["snippet"] == "Headcount was 1,450 people."
    assert unknown == [7]


def test_budget_drops_lowest_ranked_passages_to_fit_the_context(tiny_llama_dir):
    from hybrid.apps.budget import PromptBudget

    spec = AppSpec(name="acme", knowledge_base="kb1", persona="You are Pip.")
    passages = [passage(i, f"Passage {i}: " + "refund policy details " * 20) for i in (1, 2, 3)]
    question = [{"role": "user", "content": "What is the refund policy?"}]
    budget = PromptBudget(tiny_llama_dir, max_model_len=100_000)
    full = budget.count(build_messages(spec, passages, question))
    one = budget.count(build_messages(spec, passages[:1], question))
    assert budget.fit(spec, passages, question, max_tokens=50) == passages
    budget.max_model_len = one + 50
    assert budget.fit(spec, passages, question, max_tokens=50) == passages[:1]
    assert budget.fit(spec, passages, question, max_tokens=51) == []
    assert full > one
