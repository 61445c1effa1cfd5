"""Claim-level grounding: a figure is grounded only with its unit, scale, period, subject and
measure; measured on a planted-error set generated from the examples' documents."""

from __future__ import annotations

import pytest

from hybrid.apps.claims import extract_claims
from hybrid.apps.grounding import check_grounding
from hybrid.apps.grounding_eval import (
    claims_check,
    corpora,
    digits_only,
    generate,
    load_passages,
    measure,
    renumber,
)
from hybrid.apps.prompt import Passage


@pytest.fixture(scope="module")
def docs():
    report, brewbird, _ = corpora()
    return load_passages(report), load_passages(brewbird)


def holding(passages, text):
    return next(p for p in passages if text in " ".join(p.text.split()))


def test_claims_carry_value_scale_unit_and_period():
    claims = extract_claims(
        "Total revenue rose 18% to $412.6 million, from $349.7 million in 2024. "
        "Descale every 2 months; the cycle takes 25 minutes.",
        current_year=2025,
    )
    by_figure = {c.figure: c for c in claims}
    assert set(by_figure) == {"18%", "$412.6 million", "$349.7 million", "2024", "2 months",
                              "25 minutes"}  # fmt: skip
    revenue = by_figure["$412.6 million"]
    assert (revenue.unit, revenue.value, revenue.periods) == ("USD", 412_600_000, {2025})
    assert by_figure["$349.7 million"].periods == {2024}
    assert by_figure["2 months"].unit == by_figure["25 minutes"].unit == "duration"
    assert by_figure["2 months"].value == 2 * 2_629_800
    (same,) = extract_claims("It was $412,600,000.")
    assert same.same_quantity(revenue) and not extract_claims("$412.6 billion")[0].same_quantity(
        revenue
    )


@pytest.mark.parametrize(
    ("answer", "where", "flag"),
    [
        ("Descale every 1 week in hard water.", ("every 2 months",), "not 1 week"),
        ("In hard water, descale every 2 months.", ("every 2 months",), None),
        ("In hard water, descale every two months.", ("every 2 months",), None),
        ("In hard water, descale every one week.", ("every 2 months",), "not 1 week"),
        ("We saw a 17.5% increase in gross margin.", ("improved by 1.5",), "no passage gives"),
        ("Gross margin was 41.3 percent, up 1.5 percentage points.", ("improved by 1.5",), None),
        ("Gross margin was 41.3%, up 1.5%.", ("improved by 1.5",), "1.5 percentage points"),
        ("Revenue reached $1.1 billion.", ("Total revenue rose",), "no passage gives"),
        ("Total revenue in 2025 was $349.7 million.", ("Total revenue rose",), "another period"),
        (
            "Total revenue was $412.6 million in 2025, up from $349.7 million in 2024.",
            ("Total revenue rose",),
            None,
        ),
        ("Revenue grew from $349.7 million to $412,600,000.", ("Total revenue rose",), None),
        ("Our revenue was $412.6m [1].", ("Total revenue rose",), None),
        ("Total revenue was 412.6 million.", ("Total revenue rose",), None),  # unit left out
        ("Revenue was 412.6 billion.", ("Total revenue rose",), "not 412.6 billion"),
        ("The BB-200 Pro costs $249.00.", ("$249.00", "bb-200-pro.md"), "another subject"),
        ("The BB-100 costs $249.", ("$249.00", "bb-200-pro.md"), None),
    ],
)
def test_the_issue_examples(docs, answer, where, flag):
    report, brewbird = docs
    passages = []
    for text in where:
        pool = brewbird if "every" in text or "$" in text[:2] or ".md" in text else report
        if text.endswith(".md"):
            passages.append(next(p for p in brewbird if p.file_name == text))
        else:
            passages.append(holding(pool, text))
    ungrounded = check_grounding(answer, renumber(passages)).ungrounded
    if flag is None:
        assert ungrounded == []
    else:
        assert [u["kind"] for u in ungrounded] == ["number"]
        assert flag in ungrounded[0]["reason"]


def test_planted_errors_are_caught_and_correct_answers_pass():
    """Tuned on the report; the two brand knowledge bases are held out."""
    for corpus in corpora():
        cases = generate(corpus, seed=0)
        new = measure(cases, claims_check)
        old = measure(cases, digits_only)
        assert new["planted"] >= 60 and new["correct"] >= 60, corpus.name
        assert new["recall"] >= 0.90, (corpus.name, new["recall"], new["missed"][:5])
        assert new["false_flags"] <= 0.10, (corpus.name, new["false_flagged"][:5])
        assert new["recall"] > old["recall"] + 0.3, corpus.name  # the digits-only baseline


def test_generation_is_deterministic_and_seeded():
    corpus = corpora()[1]
    first = [c.answer for c in generate(corpus, seed=1)]
    assert first == [c.answer for c in generate(corpus, seed=1)]
    assert first != [c.answer for c in generate(corpus, seed=2)]


@pytest.mark.parametrize(
    ("where", "answer"),
    [
        (
            "Revenue of $412.6 million, up 18%",
            "Northwind's revenue in 2025 came to $412.6 million, which is 18 percent higher "
            "than the $349.7 million of 2024.",
        ),
        ("Headcount of 1,864", "We ended with 1,864 employees, compared to 1,612 the year before."),
        ("operating margin widened", "Operating margin widened from 8.8% to 11.2% in 2025."),
        (
            "Cash and cash equivalents were $138.9",
            "At the end of 2025 we had $138.9 million in cash, up from $112.6 million a year "
            "earlier, and no debt.",
        ),
        ("Net income was $34.8 million", "In 2025 net income reached $34.8 million."),
    ],
)
def test_free_paraphrases_of_the_report_are_not_flagged(docs, where, answer):
    report, _ = docs
    assert check_grounding(answer, renumber([holding(report, where)])).ungrounded == []


def test_each_clause_keeps_its_own_subject():
    text = (
        "# Warranty\n\nThe BB-100 carries a 2-year warranty; the BB-200 Pro carries a 3-year "
        "warranty covering the boiler and pump."
    )
    passages = [Passage(1, text, "warranty.md", "/kb/warranty.md", None, 0, len(text), 0.8)]
    swapped = check_grounding("The BB-100 has a 3-year warranty.", passages).ungrounded
    assert swapped == [
        {"text": "3", "kind": "number", "reason": "the passages give 3-year for another subject"}
    ]
    both = "The BB-100 has a 2-year warranty and the BB-200 Pro a 3-year one."
    assert check_grounding(both, passages).ungrounded == []


def _passage(text: str) -> list[Passage]:
    return [Passage(1, text, "utility.md", "/kb/utility.md", None, 0, len(text), 0.8)]


def test_figures_joined_by_and_keep_their_own_measure():
    passages = _passage(
        "Operating revenue was $92.4 million and operating expenses were $71.8 million."
    )
    assert check_grounding("Operating revenue was $92.4 million.", passages).ungrounded == []
    assert check_grounding("Operating expenses were $71.8m.", passages).ungrounded == []
    swapped = check_grounding("Operating revenue was $71.8 million.", passages).ungrounded
    assert [u["reason"] for u in swapped] == ["the passages give $92.4 million for that"]
    both = "Revenue of $92.4m and operating expenses of $71.8 million."
    assert check_grounding(both, passages).ungrounded == []


def test_a_count_written_with_a_thousands_comma_is_no_year():
    passages = _passage("Customer complaints: 1,240 in fiscal 2024 (2,015 in fiscal 2023).")
    (complaints,) = [c for c in extract_claims(passages[0].text) if c.number == "2015"]
    assert complaints.unit == "count" and complaints.periods == {2023}
    assert check_grounding("Complaints fell to 1,240 in fiscal 2024.", passages).ungrounded == []
    assert check_grounding("There were 2,015 complaints in fiscal 2023.", passages).ungrounded == []
    wrong = check_grounding("Complaints fell to 2,015 in fiscal 2024.", passages).ungrounded
    assert [u["reason"] for u in wrong] == ["the passages give 2,015 for another period"]


def test_imperial_and_energy_units_are_units():
    passages = _passage("We replaced 38 kilometres of mains and installed 12 MW of solar panels.")
    assert check_grounding("We replaced 38 km of mains.", passages).ungrounded == []
    miles = check_grounding("We replaced 38 miles of mains.", passages).ungrounded
    assert [u["reason"] for u in miles] == ["the passages give 38 kilometres, not 38 miles"]
    watts = check_grounding("The solar panels give 12 GW.", passages).ungrounded
    assert [u["reason"] for u in watts] == ["the passages give 12 MW, not 12 GW"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("We delivered 48.2 billion litres of water.", None),
        ("A year earlier we delivered 45.9 billion litres.", None),
        ("Deliveries rose from 45.9 to 48.2 billion litres.", None),
        ("Complaints fell from 1,515 to 1,240.", None),
        ("In 2024 the network lost 12.1% of its water.", None),
        ("The network lost 12.1% of its water.", None),  # a year against "now": unknown
        ("We delivered 45.9 billion litres of water.", "45.9 billion litres for another period"),
        ("A year earlier we delivered 48.2 billion litres.", "48.2 billion litres for another"),
        ("Complaints were 1,515.", "1,515 for another period"),
    ],
)
def test_a_year_earlier_is_told_apart_when_no_year_names_the_documents(answer, reason):
    # no year in the file name and none written three times: the documents' year is unknown
    passages = _passage(
        "Water delivered rose to 48.2 billion litres, from 45.9 billion litres a year earlier. "
        "Customer complaints fell to 1,240 from 1,515 the year before. "
        "In 2024 the network lost 12.1% of its water to leaks."
    )
    reasons = [u["reason"] for u in check_grounding(answer, passages).ungrounded]
    if reason is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and reasons[0].startswith(f"the passages give {reason}")


def test_from_x_to_y_without_a_change_is_a_range_not_two_periods():
    passages = _passage(
        "Pre-infusion: programmable from 0 to 10 seconds. Brew temperature: adjustable from "
        "90 to 96 degrees Celsius."
    )
    ranged = "Pre-infusion runs between 0 and 10 seconds; the temperature is 90 to 96 degrees."
    assert check_grounding(ranged, passages).ungrounded == []
    changed = _passage("Output at Brno was raised from 120 robots a week to 180 robots a week.")
    wrong = check_grounding("Output at Brno is 120 robots a week.", changed).ungrounded
    assert [u["reason"] for u in wrong] == ["the passages give 120 for another period"]
