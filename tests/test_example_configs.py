"""Every app spec, training `context:` section and example runner in examples/ is loaded by the
code that consumes it, and everything they point to exists. (Training configs themselves are
checked in tests/finetune/test_example_configs.py.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from hybrid.apps.spec import load_app_spec
from hybrid.config import load_context_training, load_train_config
from hybrid.evaluation.labelled import read_cases
from tests.conftest import EXAMPLES

APPS = sorted(EXAMPLES.rglob("apps/*.yaml"))
TRAIN = sorted(EXAMPLES.rglob("train*.yaml"))
RUNNERS = sorted(EXAMPLES.rglob("run.py"))


def test_the_examples_ship_apps_and_runners():
    assert len(APPS) >= 6 and len(RUNNERS) == 3


@pytest.mark.parametrize("path", APPS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_app_spec_is_valid(path):
    spec = load_app_spec(path)
    assert path.read_text().startswith("#"), "each app file starts with how to use it"
    assert spec.no_context.message.strip()


@pytest.mark.parametrize("path", TRAIN, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_training_context_points_to_a_valid_app(path):
    context = load_context_training(path)
    if context is not None:
        assert context.app.is_file(), f"{path}: context.app {context.app} does not exist"
        load_app_spec(context.app)


def load_demo(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEMO


@pytest.mark.parametrize("path", RUNNERS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_runner_parts_exist_and_fit_together(path):
    demo = load_demo(path)
    for sources in demo.knowledge_bases.values():
        assert all((demo.folder / s).exists() for s in sources)
    specs = [load_app_spec(demo.folder / app) for app in demo.apps]
    names = {spec.name for spec in specs}
    assert {spec.knowledge_base for spec in specs} <= set(demo.knowledge_bases)
    assert {spec.adapter for spec in specs if spec.adapter} <= {a.name for a in demo.adapters}
    assert all((demo.folder / a.train_config).is_file() for a in demo.adapters)
    assert all(0 < a.strength <= 4 for a in demo.adapters)  # what `hybrid adapter scale` takes
    assert all(set(q.apps) <= names for q in demo.questions)
    for adapter in demo.adapters:  # the quick run's `--set key=value` over each training config
        sets = {key: yaml.safe_load(str(value)) for key, value in demo.quick_train.items()}
        config = load_train_config(demo.folder / adapter.train_config, sets)
        assert config.max_steps == demo.quick_train["max_steps"] <= 80  # quick: minutes
    for evaluation in demo.evaluations:  # the labelled sets the demo scores at the end
        assert set(evaluation.apps) <= names
        assert (demo.folder / evaluation.style).is_file()
        assert (demo.folder / evaluation.style_baseline).is_file()
        cases = read_cases(demo.folder / evaluation.questions, evaluation.only)
        assert len(cases) >= 10, evaluation
