"""`hybrid eval app --url` against the real gateway over a real vLLM engine (tiny model): the
brewbird labelled set through an adapter app and a base app, usage as vLLM counts it, the
no-context path for unanswerable questions, and a blind sheet of the real answers."""

from __future__ import annotations

import json

import pytest

from hybrid.apps.app import open_pipeline
from hybrid.apps.budget import PromptBudget
from hybrid.apps.spec import AppSpec
from hybrid.cli import main
from hybrid.evaluation.labelled import read_cases
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from tests.conftest import EXAMPLES
from tests.helpers.adapters import random_lora
from tests.helpers.gateway import serve_apps

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("clean_vllm_engine")]

QUESTIONS = EXAMPLES / "branded-chatbot" / "eval" / "questions.jsonl"
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def gateway(vllm_engine, tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-app-vllm")
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root / "chroma"))
    catalog.create("brewbird-kb").ingest([EXAMPLES / "branded-chatbot" / "brands/brewbird/kb"])
    registry = AdapterRegistry(root / "registry", describe_base(tiny_llama_dir), max_rank=8)
    registry.register(random_lora(tiny_llama_dir, root / "lora", seed=5, alpha=128), "voice")
    budget = PromptBudget(tiny_llama_dir, vllm_engine.config.max_model_len)
    pipelines = [
        open_pipeline(
            AppSpec(
                name=name,
                knowledge_base="brewbird-kb",
                adapter=adapter,
                persona="You are Pip.",
                retrieval={"top_k": 2},
                no_context={"message": "Not in our guides."},
            ),
            catalog,
            budget,
        )
        for name, adapter in (("pip", "voice"), ("pip-base", None))
    ]
    with serve_apps(vllm_engine, registry, pipelines) as server:
        yield server


def test_eval_app_through_the_gateway_on_vllm(gateway, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["eval", "app", "pip", str(QUESTIONS), "--against", "pip-base", "--url", gateway.url]
    args += ["--only", "brand=brewbird", "--max-tokens", str(MAX_TOKENS), "--out", str(out), "-q"]
    code = main(args)
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert stdout.startswith("pip: correct ") and "pip-base: correct " in stdout

    cases = read_cases(QUESTIONS, {"brand": "brewbird"})
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["cases"] == len(cases) and report["settings"]["mode"] == "gateway"
    by_app = report["results"]
    for app in ("pip", "pip-base"):
        results = by_app[app]
        assert [r["line"] for r in results] == [c.line for c in cases]
        assert not any(r["error"] for r in results)
        generated = [r for r in results if not r["abstained"]]
        assert generated, app
        # vLLM's own usage: the prompt holds the passages, the answer at most MAX_TOKENS
        assert all(r["prompt_tokens"] > 50 for r in generated)
        assert all(1 <= r["completion_tokens"] <= MAX_TOKENS for r in generated)
        assert all(r["answer"] == "Not in our guides." for r in results if r["abstained"])
        summary = next(s for s in report["summaries"] if s["app"] == app)
        counted = [r["completion_tokens"] for r in results if r["completion_tokens"] is not None]
        assert summary["tokens"]["completion"] == sum(counted)
        assert summary["correctness"]["n"] == sum(c.answerable for c in cases)
    # the adapter changes the tiny model's greedy text on the same prompts
    pairs = zip(by_app["pip"], by_app["pip-base"], strict=True)
    assert any(a["answer"] != b["answer"] for a, b in pairs if not a["abstained"])
    key = json.loads((out / "ab_key.json").read_text())
    sheet = (out / "ab_sheet.html").read_text()
    first = str(cases[0].line)
    a_app = key["questions"][first]["A"]
    from html import escape

    a_answer = by_app[a_app][0]["answer"]
    assert escape(a_answer) in sheet.split(f'id="q{first}"')[1].split("<b>B</b>")[0]
