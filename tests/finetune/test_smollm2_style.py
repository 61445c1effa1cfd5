"""The slower tier's evidence on the real default base model: `hybrid model prepare`, then
`hybrid train` on the CEO style set of examples/ceo-report-qa and `hybrid eval adapter`. Held-out loss on
the style data falls clearly, the general guard moves little, and the report says so.

About 2 minutes on a 2-core CPU once SmolLM2 is prepared (the conversion adds ~25 s, once per
machine, into the same cache folder `hybrid model prepare` uses).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.base_models import DEFAULT_BASE_MODEL
from finetune.manifest import base_fingerprint, read_manifest
from hybrid.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STYLE = REPO / "examples" / "ceo-report-qa" / "style" / "qa.jsonl"
SYSTEM = "You are Margaret Okafor, CEO of Northwind Robotics."
QUESTIONS = [
    "How do you think about risk?",
    "What makes a good manager?",
    "How should we handle a bad quarter?",
]
# Her letters and answers lean on sailing metaphors; the base model's answers do not.
NAUTICAL = r"(?i)\b(ship|sail\w*|keel|crew|voyage|harbou?r|tide|anchor\w*|helm|heading|course)\b"


def test_style_adapter_on_smollm2_lowers_held_out_loss_and_spares_the_guard(tmp_path, capsys):
    assert main(["model", "prepare", "--json"]) == 0
    smollm2_dir = Path(json.loads(capsys.readouterr().out)["path"])
    assert smollm2_dir.name == DEFAULT_BASE_MODEL and (smollm2_dir / "config.json").exists()
    # 120 examples, 24 held out; one epoch of 12 steps of 8 (each ~7 s on 2 CPU cores).
    # Validation runs every 2 x logging_steps: 6 puts it at the last step only (at 4 a run at
    # step 8 cost ~10 s and fed no assertion; the training itself is the same).
    (tmp_path / "train.yaml").write_text(
        f"base_model: {DEFAULT_BASE_MODEL}\ndata: [{STYLE}]\noutput_dir: adapters/ceo-voice\n"
        "epochs: 1\nbatch_size: 8\ngradient_accumulation: 1\nlearning_rate: 0.002\n"
        "max_length: 160\nvalidation_share: 0.2\nwarmup_ratio: 0\nlogging_steps: 6\n"
        "save_steps: 1000\nseed: 0\n"
    )
    assert main(["train", str(tmp_path / "train.yaml"), "-q"]) == 0
    trained = capsys.readouterr().out
    adapter = tmp_path / "adapters" / "ceo-voice"
    assert f"adapter written to {adapter} (12 steps" in trained
    manifest = read_manifest(adapter)
    assert manifest["base_model"]["fingerprint"] == base_fingerprint(smollm2_dir)
    assert manifest["metrics"]["validation_examples"] == 24

    (tmp_path / "prompts.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": q},
                    ]
                }
            )
            + "\n"
            for q in QUESTIONS
        )
    )
    (tmp_path / "eval.yaml").write_text(
        "max_examples: 24\nmax_length: 160\nprompts: [prompts.jsonl]\nmax_new_tokens: 24\n"
        f"rules:\n  - {{kind: regex, name: nautical, value: '{NAUTICAL}'}}\n"
    )
    code = main(
        [
            "eval",
            "adapter",
            str(adapter),
            "--config",
            str(tmp_path / "eval.yaml"),
            "--out",
            str(tmp_path / "report"),
            "-q",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    sets = {s["name"]: s for s in report["sets"]}
    print("\n" + "\n".join(f"{n}: {s}" for n, s in sets.items()))
    # measured: seen 4.26 -> 3.36 (-21%), held-out 4.00 -> 3.30 (-18%), guard 1.65 -> 1.58 (-4%)
    assert sets["in-domain held-out"]["examples"] == 24
    assert sets["in-domain held-out"]["relative_change"] < -0.10
    assert sets["in-domain seen"]["relative_change"] < -0.10
    assert abs(sets["general guard"]["relative_change"]) < 0.10
    assert report["passed"] and report["failures"] == [] and code == 0

    adherence = report["adherence"]
    print({k: adherence[k] for k in ("base_rate", "adapter_rate", "samples")})
    assert adherence["prompts"] == len(QUESTIONS)
    assert adherence["adapter_rate"] >= adherence["base_rate"]  # measured: 0% -> 33% or more
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "Verdict: **PASS**" in markdown
    assert "| in-domain held-out | 24 |" in markdown and "| nautical |" in markdown
    assert (tmp_path / "report" / "eval.png").stat().st_size > 1000
