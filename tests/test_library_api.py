"""What a Python user calls: `hybrid.serve`, `hybrid.train` and friends, the functions the CLI's
verbs are shells over, reachable without loading the layers on `import hybrid`."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hybrid


def test_import_hybrid_loads_no_layer():
    code = (
        "import sys, hybrid; "
        "print(sorted(m for m in ('retrieval', 'finetune', 'serving', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_serve_and_train_are_the_library_functions_even_after_their_modules_load():
    import hybrid.server
    import hybrid.training

    # A submodule named like its function would replace the function once imported.
    assert hybrid.serve is hybrid.server.serve and callable(hybrid.serve)
    assert hybrid.train is hybrid.training.train and callable(hybrid.train)
    assert hybrid.load_config.__module__ == "hybrid.config"


def test_unknown_attribute_names_itself():
    with pytest.raises(AttributeError, match="no_such_thing"):
        hybrid.no_such_thing  # noqa: B018


@pytest.mark.parametrize(
    ("command", "model", "field"),
    [
        (["train"], "TrainConfig", "max_steps"),
        (["eval", "adapter"], "EvalConfig", "guard_bound"),
        (["serve"], "GatewayConfig", "host"),
    ],
)
def test_option_help_is_the_config_fields_own_docstring(command, model, field):
    from typer.testing import CliRunner

    import hybrid.config
    from hybrid.cli import app
    from hybrid.cli.help import field_help

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.replace("│", " ").split())
    wanted = field_help(getattr(hybrid.config, model), field)
    assert wanted in shown, f"{wanted!r} not in {command} --help"
