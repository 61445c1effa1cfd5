"""Every training config shipped in examples/ parses against `hybrid train` and its data reads
and passes the data check (lengths estimated; no base model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.data import check_dataset
from finetune.training import load_training_examples
from hybrid.config import load_train_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = sorted(EXAMPLES.rglob("train*.yaml"))


def test_examples_ship_a_training_config():
    assert EXAMPLES / "ceo-report-qa" / "train.yaml" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_training_config_is_valid_and_its_data_checks_out(path):
    assert path.read_text().startswith(f"# hybrid train examples/{path.relative_to(EXAMPLES)}")
    config = load_train_config(path)
    examples = load_training_examples(config)
    report = check_dataset(examples, None, max_length=config.max_length)
    assert report.ok, report.to_text()
    assert config.output_dir.resolve().is_relative_to(EXAMPLES.parent / "artifacts")
