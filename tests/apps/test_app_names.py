"""App names are checked whole: a trailing newline (which `$` lets through) is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hybrid.apps.spec import AppSpec


def spec(name: str) -> dict:
    return {"name": name, "knowledge_base": "docs", "persona": "You are helpful."}


@pytest.mark.parametrize("name", ["app\n", "acme-support\n", "ab\r\n"])
def test_app_names_with_a_newline_are_refused(name):
    with pytest.raises(ValidationError, match="use 2-64 characters of a-z"):
        AppSpec.model_validate(spec(name))


def test_plain_app_name_is_accepted():
    assert AppSpec.model_validate(spec("acme-support")).name == "acme-support"
