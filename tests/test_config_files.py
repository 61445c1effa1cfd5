"""The one YAML reader and the one path rule (hybrid/config_files.py) as every config file
meets them: hybrid.yaml, training and eval configs, their `context:` section and app files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hybrid.apps.spec import AppSpec, load_app_spec
from hybrid.config import load_context_training, load_eval_config, load_train_config
from hybrid.errors import ConfigError
from retrieval import QueryOptions


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_every_kind_of_file_reports_yaml_errors_the_same_way(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "a: [1, 2\n")
    listed = _write(tmp_path / "list.yaml", "- 1\n- 2\n")
    for load in (load_train_config, load_context_training, load_app_spec):
        with pytest.raises(ConfigError, match=r"bad\.yaml line \d+: not valid YAML"):
            load(bad)
        with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping of .*got list"):
            load(listed)
    with pytest.raises(ConfigError, match=r"app file not found: .*nope\.yaml"):
        load_app_spec(tmp_path / "nope.yaml")


def test_training_paths_follow_the_file_and_command_line_paths_are_taken_as_given(
    tmp_path, monkeypatch
):
    (tmp_path / "cfg" / "models" / "tiny").mkdir(parents=True)
    config = _write(
        tmp_path / "cfg" / "train.yaml",
        {
            "data": "data.jsonl",  # one value: a list of one
            "output_dir": "out",
            "base_model": "models/tiny",  # a folder beside the file: a path
            "replay": {"paths": ["general.jsonl"], "share": 0.1},
            "context": {"app": "app.yaml", "holdout": ["held.jsonl"]},
        },
    )
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "cfg"
    settings = load_train_config(Path("cfg/train.yaml"))
    assert settings.data == (base / "data.jsonl",)
    assert settings.output_dir == base / "out"
    assert settings.base_model == str(base / "models" / "tiny")
    assert settings.replay.paths == (base / "general.jsonl",)
    context = load_context_training(config)
    assert context.app == base / "app.yaml" and context.holdout == (base / "held.jsonl",)

    given = load_train_config(config, {"output_dir": Path("elsewhere"), "epochs": 1})
    assert given.output_dir == Path("elsewhere") and given.epochs == 1
    named = load_train_config(config, {"base_model": "SmolLM2-135M-Instruct"})
    assert named.base_model == "SmolLM2-135M-Instruct"  # a packaged name is not a path


def test_eval_paths_follow_the_file_and_a_single_prompt_file_becomes_a_list(tmp_path):
    config = _write(
        tmp_path / "e" / "eval.yaml",
        {"prompts": "prompts.jsonl", "rules": [{"kind": "regex", "value": "x"}], "output_dir": "r"},
    )
    settings = load_eval_config(config, {"adapter": Path("adapter")})
    assert settings.prompts == (tmp_path / "e" / "prompts.jsonl",)
    assert settings.output_dir == tmp_path / "e" / "r"
    assert settings.adapter == Path("adapter")


def test_app_retrieval_is_query_options_with_the_apps_defaults():
    spec = AppSpec(name="a1", knowledge_base="kb1", persona="You are A.")
    assert isinstance(spec.retrieval, QueryOptions)
    assert (spec.retrieval.top_k, spec.retrieval.mode, spec.retrieval.min_similarity) == (
        4,
        "hybrid",
        "auto",
    )
    assert QueryOptions().mode == "vector"  # the library's own default is untouched
    tuned = AppSpec(
        name="a1",
        knowledge_base="kb1",
        persona="You are A.",
        retrieval={"min_score": 0.02, "filters": {"page": 3}},
    )
    assert tuned.retrieval.min_score == 0.02 and tuned.retrieval.filters == {"page": 3}
    with pytest.raises(ValueError, match="less than or equal to 20"):
        AppSpec(name="a1", knowledge_base="kb1", persona="You are A.", retrieval={"top_k": 50})
