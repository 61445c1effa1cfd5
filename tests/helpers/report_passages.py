"""The CEO example's report as passages and its app spec, for the grounded- and
abstention-example tests."""

from __future__ import annotations

from hybrid.apps.prompt import Passage
from hybrid.apps.spec import AppSpec, load_app_spec
from tests.conftest import EXAMPLES

CEO = EXAMPLES / "ceo-report-qa"


def passages_of(text: str, name: str = "report.pdf") -> list[Passage]:
    """`text`'s paragraphs longer than 80 characters as numbered passages of file `name`."""
    paragraphs = [p for p in text.split("\n\n") if len(p) > 80]
    return [Passage(i, p, name, name, 1, 0, len(p), 0.0) for i, p in enumerate(paragraphs, 1)]


def report_passages() -> list[Passage]:
    return passages_of((CEO / "report_source.md").read_text(encoding="utf-8"))


def ceo_app_spec() -> AppSpec:
    return load_app_spec(CEO / "apps" / "northwind-ceo.yaml")
