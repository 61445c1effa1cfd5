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


def _imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


CLI = REPO / "hybrid" / "cli"


def test_cli_modules_reach_the_layers_only_through_hybrid():
    """The CLI parses and prints; what it runs is a `hybrid` library function a Python user can
    call too, so no CLI module imports retrieval/, finetune/ or serving/ itself."""
    files = sorted(CLI.glob("*.py"))
    assert {p.stem for p in files} >= {"kb", "data", "train", "eval", "adapter", "serve", "keys"}
    offenders = [
        f"{path.relative_to(REPO)} imports {sorted(bad)}"
        for path in files
        if (bad := imported_top_levels(path.read_text(encoding="utf-8")) & set(LAYERS))
    ]
    assert not offenders, "CLI modules must call hybrid's library:\n" + "\n".join(offenders)


def test_the_library_never_imports_the_cli():
    """Entry points are thin and libraries never import them (STYLE.md 1)."""
    offenders = []
    for path in sorted((REPO / "hybrid").rglob("*.py")):
        if path.is_relative_to(CLI):
            continue
        imported = _imported_modules(path.read_text(encoding="utf-8"))
        if any(m == "hybrid.cli" or m.startswith("hybrid.cli.") for m in imported):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, "library modules importing the CLI: " + ", ".join(offenders)


def test_checker_sees_dotted_cli_imports():
    src = "from hybrid.cli.state import State\nimport hybrid.cli\nfrom hybrid import config\n"
    assert _imported_modules(src) == {"hybrid.cli.state", "hybrid.cli", "hybrid"}


MAX_LINES = 400
REASON = "Why one module:"


def test_long_modules_say_why_they_are_one_module():
    """A module over ~400 lines states in its docstring, after `Why one module:`, why it is not
    split (the issue's evidence: no long module without a stated reason)."""
    offenders = []
    for package in ("hybrid", *LAYERS):
        for path in sorted((REPO / package).rglob("*.py")):
            name = str(path.relative_to(REPO))
            source = path.read_text(encoding="utf-8")
            if source.count("\n") <= MAX_LINES:
                continue
            docstring = ast.get_docstring(ast.parse(source)) or ""
            if REASON not in docstring:
                offenders.append(f"{name} ({source.count(chr(10))} lines)")
    assert not offenders, (
        f"over {MAX_LINES} lines with no '{REASON}' in the docstring: " + ", ".join(offenders)
    )
