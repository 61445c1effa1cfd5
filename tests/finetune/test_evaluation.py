"""`hybrid eval adapter` and `hybrid adapter merge` on a tiny model trained from a real JSONL file."""

from __future__ import annotations

import json

import pytest

from finetune.evaluation import (
    Adherence,
    EvalConfig,
    SetScore,
    StyleRule,
    evaluate_adapter,
    verdict,
)
from hybrid.cli import main
from hybrid.config import load_train_config
from tests.helpers.training import style_examples, write_chats

TOPICS = [
    "safety",
    "people",
    "customers",
    "innovation",
    "factories",
    "quality",
    "suppliers",
    "growth",
]


@pytest.fixture(scope="module")
def trained(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_chats(root / "style.jsonl", style_examples(48, topics=TOPICS))
    config = root / "train.yaml"
    config.write_text(
        f"base_model: {tiny_llama_dir}\ndata: [style.jsonl]\noutput_dir: adapters/voice\n"
        "epochs: 20\nbatch_size: 8\ngradient_accumulation: 1\nlearning_rate: 0.01\n"
        "max_length: 96\nvalidation_share: 0.25\nlogging_steps: 4\nsave_steps: 1000\n"
    )
    assert main(["train", str(config), "-q"]) == 0
    return load_train_config(config), root


def test_eval_reports_base_vs_adapter_on_three_sets(trained, tmp_path):
    train_config, root = trained
    prompts = root / "prompts.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"messages": [{"role": "user", "content": f"Tell me about {t}."}]})
            for t in TOPICS[:4]
        )
        + "\n"
    )
    config = EvalConfig(
        adapter=train_config.output_dir,
        output_dir=tmp_path / "report",
        prompts=(prompts,),
        rules=(StyleRule(kind="required_phrase", value="fellow owners"),),
        max_new_tokens=16,
    )
    report = evaluate_adapter(config, progress=False)
    by_name = {s.name: s for s in report.sets}
    assert set(by_name) == {"in-domain seen", "in-domain held-out", "general guard"}
    assert by_name["in-domain seen"].examples == 36 and by_name["in-domain held-out"].examples == 12
    assert by_name["general guard"].examples == 60
    for name in ("in-domain seen", "in-domain held-out"):
        assert by_name[name].adapter_loss < 0.8 * by_name[name].base_loss
    assert report.adherence is not None and report.adherence.prompts == 4
    assert 0.0 <= report.adherence.adapter_rate <= 1.0
    assert len(report.adherence.samples) == 4
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["passed"] == report.passed and len(written["sets"]) == 3
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| in-domain held-out | 12 |" in markdown and "eval.png" in markdown
    assert (tmp_path / "report" / "eval.png").stat().st_size > 1000


def test_cli_exit_code_follows_the_verdict(trained, tmp_path, capsys):
    train_config, _ = trained
    code = main(
        [
            "eval",
            "adapter",
            str(train_config.output_dir),
            "--out",
            str(tmp_path / "r"),
            "-q",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["passed"] else 1)
    # a bound of 0 fails whenever the guard loss rose at all
    guard = next(s for s in report["sets"] if s["name"] == "general guard")
    code0 = main(
        [
            "eval",
            "adapter",
            str(train_config.output_dir),
            "--out",
            str(tmp_path / "r0"),
            "-q",
            "--bound",
            "0",
        ]
    )
    assert code0 == (1 if guard["relative_change"] > 0 or not report["passed"] else 0)


def test_verdict_names_each_failed_check():
    scores = [
        SetScore("in-domain seen", 10, 100, 2.0, 1.0),
        SetScore("in-domain held-out", 5, 50, 2.0, 2.1),
        SetScore("general guard", 60, 900, 1.0, 1.25),
    ]
    adherence = Adherence(prompts=10, base_rate=0.1, adapter_rate=0.5, per_rule={})
    failures = verdict(scores, adherence, guard_bound=0.1, min_adherence=0.8)
    assert len(failures) == 3
    assert failures[0].startswith(
        "in-domain held-out: adapter loss 2.1000 is not below base 2.0000"
    )
    assert "loss rose 25.0%, above the 10% bound" in failures[1]
    assert "adapter passes 50% of prompts, below 80%" in failures[2]
    assert verdict(scores[:1], None, 0.1, None) == []


@pytest.mark.parametrize(
    ("rule", "answer", "ok"),
    [
        (StyleRule(kind="regex", value=r"^Dear \w+"), "Dear owners, hello", True),
        (StyleRule(kind="regex", value=r"^Dear \w+"), "Hello", False),
        (StyleRule(kind="required_phrase", value="Onward"), "... onward, Margaret", True),
        (StyleRule(kind="forbidden_phrase", value="as an AI"), "As an AI model I", False),
        (
            StyleRule(kind="json_schema", value={"type": "object", "required": ["answer"]}),
            '{"answer": 1}',
            True,
        ),
        (
            StyleRule(kind="json_schema", value={"type": "object", "required": ["answer"]}),
            "answer: 1",
            False,
        ),
    ],
)
def test_style_rules(rule, answer, ok):
    assert rule.check(answer) is ok


def test_merge_gives_the_adapter_outputs_without_peft(trained, tmp_path, tiny_llama_dir, capsys):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.merge import merge_adapter

    train_config, _ = trained
    merged_dir = tmp_path / "merged"
    args = ["adapter", "merge", str(train_config.output_dir), "--out", str(merged_dir)]
    assert main([*args, "--dtype", "float32"]) == 0
    assert capsys.readouterr().out.strip() == f"merged model written to {merged_dir}"
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32),
        train_config.output_dir,
    )
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft(ids).logits, atol=1e-4)
    assert not list(merged_dir.glob("adapter_*"))
    with pytest.raises(Exception, match="already exists"):
        merge_adapter(train_config.output_dir, merged_dir)
    assert main(args) == 1
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert line == f"error: output folder {merged_dir} already exists; choose another --out"


def test_bad_rules_are_refused_when_the_config_is_read(tmp_path):
    from hybrid.config import load_eval_config
    from hybrid.errors import ConfigError

    (tmp_path / "eval.yaml").write_text(
        "rules:\n  - {kind: regex, value: '(x'}\n  - {kind: json_schema, value: nope}\n"
        "  - {kind: json_schema, value: {type: 3}}\n  - {kind: required_phrase, value: ''}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_eval_config(tmp_path / "eval.yaml", {"adapter": tmp_path})
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'eval.yaml'}: 4 problem") and "\n" not in message
    assert "rules.0: regex '(x' does not compile (missing ), unterminated subpattern" in message
    assert "rules.1: a json_schema rule's value must be a JSON schema object" in message
    assert "rules.2: invalid JSON schema (3 is not valid under any of the given schemas)" in message
    assert "rules.3: a required_phrase rule's value must be non-empty text" in message


def test_prompt_set_without_a_user_turn_names_the_line(trained, tmp_path):
    from finetune.errors import DatasetError

    train_config, _ = trained
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "system", "content": "Be brief."}]}))
    config = EvalConfig(
        adapter=train_config.output_dir,
        output_dir=tmp_path / "report",
        prompts=(prompts,),
        rules=(StyleRule(kind="required_phrase", value="fellow owners"),),
        max_examples=4,
    )
    with pytest.raises(DatasetError, match=f"{prompts}:1: prompt has no user turn to answer"):
        evaluate_adapter(config, progress=False)


def test_prompts_and_rules_come_together():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="prompts are given but no rules to check"):
        EvalConfig(adapter="a", prompts=("p.jsonl",))
    with pytest.raises(ValidationError, match="rules need prompts to generate answers for"):
        EvalConfig(adapter="a", rules=(StyleRule(kind="required_phrase", value="x"),))
