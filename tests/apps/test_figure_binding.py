"""Figure binding: the grammar is checked with xgrammar's own matcher (the library vLLM's default
structured-output backend runs), the app's engine body carries it only when it should, and the
in-process generator applies the same grammar to a real (tiny) model."""

from __future__ import annotations

import pytest
import xgrammar

from hybrid.apps.figure_binding import (
    binding_for,
    figure_grammar,
    figures_in,
    unbound_figures,
)
from hybrid.apps.pipeline import AppPipeline
from hybrid.apps.prompt import Passage
from hybrid.apps.spec import AppSpec

REPORT = [
    "Revenue grew to $412.6 million in 2025, from $377.9 million in 2024.",
    "Gross margin was 41.3%. Cash at year end: $138.9 million. Headcount: 1,250.",
]


def _matcher(grammar: str, vocab: list[str] | None = None, stop: list[int] | None = None):
    info = xgrammar.TokenizerInfo(vocab or [], stop_token_ids=stop)
    compiled = xgrammar.GrammarCompiler(info, cache_enabled=False).compile_grammar(grammar)
    return xgrammar.GrammarMatcher(compiled, terminate_without_stop_token=vocab is None)


def accepts(grammar: str, text: str) -> bool:
    matcher = _matcher(grammar)
    return matcher.accept_string(text) and matcher.is_terminated()


def test_figures_are_maximal_digit_runs_with_inner_separators():
    text = "In Q4 2025 revenue was $1,250.5 million (1.1 times 2024's), on 2025-03-31 [2]."
    assert figures_in([text]) == ["4", "2025", "1,250.5", "1.1", "2024", "03", "31", "2"]
    assert figures_in(["in 2025.", "up 3,"]) == ["2025", "3"]


@pytest.mark.parametrize(
    "answer",
    [
        "Revenue was $412.6 million in 2025 [1].",
        "Gross margin was 41.3% [2], and cash was $138.9 million.",
        "We ended the year with 1,250 people.\nRevenue rose from $377.9 million [1][2]",
        "In 2025.",
        "No figures at all, just words [1].",
        "",
    ],
)
def test_answers_with_only_the_sources_figures_are_accepted(answer):
    grammar = figure_grammar(figures_in(REPORT), citations=2)
    assert accepts(grammar, answer), answer
    assert unbound_figures(answer, figures_in(REPORT)) == []


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("Revenue was $1.1 billion.", "a figure from nowhere"),
        ("Revenue was $412 million.", "a rounded figure"),
        ("Gross margin was 17.5%.", "the planted figure of the issue"),
        ("Revenue was $412.6.5 million.", "a figure with an extra group"),
        ("In 20 25 we grew", "digits not in the sources"),
        ("1,2505 people", "a figure run on into more digits"),
        ("See [3].", "a citation of a passage that was not given"),
        ("We have 4 factories", "a small number the sources do not hold"),
    ],
)
def test_answers_with_other_figures_are_refused(answer, why):
    grammar = figure_grammar(figures_in(REPORT), citations=2)
    assert not accepts(grammar, answer), why


def test_a_figure_cannot_be_assembled_from_shorter_allowed_ones():
    grammar = figure_grammar(["41", "3", "20", "25"], citations=0)
    assert accepts(grammar, "41 and 3, then 20 or 25.")
    assert not accepts(grammar, "41.3")
    assert not accepts(grammar, "2025")
    assert not accepts(grammar, "20,25")


def test_no_figures_means_no_digits_but_citations_stay_allowed():
    grammar = figure_grammar([], citations=3)
    assert accepts(grammar, "The sources cover it [3].")
    assert not accepts(grammar, "It costs 5 dollars.")


def test_the_model_can_stop_after_a_figure_or_a_sentence():
    vocab = ["Revenue", " was", " ", "412.6", "41", ".", "[1]", "[", "<eos>"]
    eos = vocab.index("<eos>")
    grammar = figure_grammar(["412.6"], citations=1)
    for pieces in (["Revenue", " was", " ", "412.6"], ["Revenue", " ", "412.6", ".", "[1]"]):
        matcher = _matcher(grammar, vocab, [eos])
        for piece in pieces:
            assert matcher.accept_token(vocab.index(piece)), piece
        assert matcher.accept_token(eos) and matcher.is_terminated(), pieces
    # "41" may start "412.6", but the answer can neither stop there nor end the number.
    for after in ("<eos>", ".", " "):
        matcher = _matcher(grammar, vocab, [eos])
        assert matcher.accept_token(vocab.index("Revenue"))
        assert matcher.accept_token(vocab.index("41"))
        assert not matcher.accept_token(vocab.index(after)), after


def test_many_figures_compile_and_bind():
    figures = [f"{n:,}.{n % 10}" for n in range(1000, 1000 + 200 * 37, 37)]
    grammar = figure_grammar(figures, citations=8)
    assert accepts(grammar, f"From {figures[0]} to {figures[-1]} units [8].")
    assert not accepts(grammar, "From 999.9 units.")


def test_a_non_figure_is_refused_with_its_value():
    with pytest.raises(ValueError, match=r"not figures: \['12a'\]"):
        figure_grammar(["412.6", "12a"], citations=1)


def test_binding_is_skipped_when_the_context_is_a_wall_of_numbers():
    wall = " ".join(str(n) for n in range(3000))
    assert binding_for([wall], citations=1) is None
    assert binding_for(REPORT, citations=2) == {"grammar": figure_grammar(figures_in(REPORT), 2)}


# ---- the app's engine body ----------------------------------------------------------------------


def _pipeline(bind: bool) -> AppPipeline:
    spec = AppSpec(
        name="northwind",
        knowledge_base="report",
        persona="You are the CEO.",
        generation={"max_tokens": 50, "bind_figures": bind},
    )
    return AppPipeline(spec, knowledge_base=None)  # engine_body needs no retrieval


def _passages() -> list[Passage]:
    return [
        Passage(i, text, "report.pdf", "/r/report.pdf", i, 0, len(text), 0.8)
        for i, text in enumerate(REPORT, start=1)
    ]


def test_a_binding_app_sends_the_grammar_of_its_passages_and_the_question():
    question = "Compared with 2019 and its 7 plants, how did revenue do?"
    body = {
        "model": "northwind",
        "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}],
        "structured_outputs": {"regex": "[0-9]+"},  # the app owns the constraint
        "temperature": 0,
    }
    engine = _pipeline(bind=True).engine_body(body, _passages())
    grammar = engine["structured_outputs"]["grammar"]
    assert set(engine["structured_outputs"]) == {"grammar"}
    assert "bind_figures" not in engine and engine["temperature"] == 0
    assert accepts(grammar, "Revenue was $412.6 million in 2025 [2], against 2019 with 7 plants.")
    assert not accepts(grammar, "Revenue was 8 times higher.")


def test_binding_needs_passages_and_the_option():
    body = {"model": "northwind", "messages": [{"role": "user", "content": "Revenue?"}]}
    assert "structured_outputs" not in _pipeline(bind=True).engine_body(body, [])
    free = _pipeline(bind=False).engine_body(body, _passages())
    assert "structured_outputs" not in free and "bind_figures" not in free
    own = {**body, "structured_outputs": {"regex": "[a-z]+"}}
    passed = _pipeline(bind=False).engine_body(own, _passages())
    assert passed["structured_outputs"] == {"regex": "[a-z]+"}


# ---- the in-process path: the same grammar on a real (tiny, random) model -------------------


def test_local_generator_applies_the_binding(tiny_llama_dir):
    import torch

    from hybrid.apps.generators import LocalGenerator

    torch.set_num_threads(1)
    generator = LocalGenerator(tiny_llama_dir)
    messages = [{"role": "user", "content": "0 1 2 3 4 5 6 7 8 9 10 100 2025 percent million"}]
    sampling = {"max_tokens": 60, "temperature": 1.0, "seed": 3}
    free = [generator.generate(messages, {**sampling, "seed": s}) for s in range(4)]
    allowed = ["2025", "10"]
    binding = {"grammar": figure_grammar(allowed, citations=1)}
    bound = [
        generator.generate(messages, {**sampling, "seed": s, "structured_outputs": binding})
        for s in range(4)
    ]
    # The random model writes digits freely; bound, it writes only the allowed figures.
    assert any(unbound_figures(text, allowed) for text in free), free
    assert all(unbound_figures(text, allowed) == [] for text in bound), bound
