"""The layering the user asked for: retrieval/, finetune/, serving/ never import hybrid/ or each
other; only hybrid/ composes them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("retrieval", "finetune", "serving")
FORBIDDEN = {layer: {"hybrid", *(other for other in LAYERS if other != layer)} for layer in LAYERS}


def imported_top_levels(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_checker_sees_nested_and_from_imports():
    src = "import os\nfrom hybrid.config import X\ndef f():\n    import serving.app\n"
    assert imported_top_levels(src) == {"os", "hybrid", "serving"}


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_no_sibling_and_no_hybrid(layer):
    files = sorted((REPO / layer).rglob("*.py"))
    assert files, f"{layer}/ has no Python files"
    offenders = []
    for path in files:
        bad = imported_top_levels(path.read_text(encoding="utf-8")) & FORBIDDEN[layer]
        if bad:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert not offenders, "layering broken:\n" + "\n".join(offenders)
