"""Option help taken from the config fields' own docstrings, so a setting is described once.

Pydantic's `use_attribute_docstrings` would do this, but only for fields a class declares
itself and only when each layer's models opt in; reading the docstrings here keeps the layers'
configs as they are.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from functools import cache


def field_help(model: type, name: str, suffix: str = "") -> str:
    """The docstring under `name` in `model` (or a base class), on one line, plus `suffix`.

    Raises:
        KeyError: the field has no docstring (a programming error, caught by the CLI tests).
    """
    for cls in model.__mro__:
        doc = _attribute_docs(cls).get(name)
        if doc:
            return " ".join(doc.split()) + suffix
    raise KeyError(f"{model.__name__}.{name} has no docstring to use as help")


@cache
def _attribute_docs(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    docs: dict[str, str] = {}
    if not isinstance(body, ast.ClassDef):
        return docs
    for node, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = following.value.value
    return docs
