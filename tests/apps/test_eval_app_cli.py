"""`hybrid eval app` end to end: two apps run in-process over a real knowledge base (MiniLM,
embedded Chroma), their text from the fake engine behind a real HTTP port, the voice model
fitted on MiniLM embeddings, a judge on another fake engine; and its one-line errors."""

from __future__ import annotations

import json

import pytest

from hybrid.cli import main
from hybrid.errors import UsageError
from tests.helpers.documents import write_brewbird_docs
from tests.helpers.gateway import ServerThread
from tests.helpers.training import write_chats
from tests.serving.fake_engine import FakeEngine

QUESTIONS = [
    {
        "question": "How long do I have to return my machine?",
        "answers": ["45 days"],
        "source": "refunds.md",
        "evidence": "returns within 45 days",
    },
    {
        "question": "How long is the warranty on the BB-200 Pro?",
        "answers": ["3-year", "3 years"],
        "source": "warranty.md",
        "evidence": "a 3-year warranty",
    },
    {
        "messages": [
            {"role": "user", "content": "How long is the BB-100 warranty?"},
            {"role": "assistant", "content": "Two years."},
        ],
        "question": "And how quickly are refunds paid for returns?",
        "answers": ["5 business days"],
        "source": "refunds.md",
        "evidence": "within 5 business days",
    },
    {"question": "What is the boiling point of liquid nitrogen on Neptune?", "answerable": False},
]
STYLE = [
    "Ahoy! Let's get that sorted for you, fellow bean lover. Happy brewing!",
    "Oh no, a grumpy grinder! Give it a gentle tap and try again. Happy brewing!",
    "What a lovely question! Your BrewBird loves fresh water. Happy brewing!",
    "Tweet tweet! Our nest is here to help, friend. Happy brewing!",
    "Let's flap our wings and fix this together, shall we? Happy brewing!",
    "Chirp! A little descaling keeps your BrewBird singing. Happy brewing!",
    "Feathers crossed, this does the trick for your morning cup. Happy brewing!",
    "Perch right here and we'll work it out together. Happy brewing!",
]
BASE = [
    "As an AI language model, I can provide information about this topic.",
    "Here are some general steps you can follow to resolve the issue.",
    "I'm sorry, but I don't have access to specific order information.",
    "There are several factors to consider when answering this question.",
    "It is important to consult the user manual for detailed instructions.",
    "Please note that results may vary depending on your circumstances.",
    "In summary, the answer depends on a number of variables.",
    "I recommend contacting customer support for further assistance.",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-app")
    docs = write_brewbird_docs(root / "docs", "refunds.md", "warranty.md")
    store = str(root / "store")
    assert main(["--data-dir", store, "kb", "create", "brewbird-kb"]) == 0
    assert main(["--data-dir", store, "kb", "ingest", "brewbird-kb", str(docs)]) == 0
    apps = root / "apps"
    apps.mkdir()
    common = (
        "knowledge_base: brewbird-kb\nretrieval: {top_k: 1, min_similarity: 0.3}\n"
        "no_context: {message: That is not in our guides.}\n"
    )
    (apps / "voice.yaml").write_text(f"name: pip\nadapter: voice\npersona: You are Pip.\n{common}")
    (apps / "base.yaml").write_text(f"name: plain\npersona: You are a helper.\n{common}")
    questions = root / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    style = write_chats(root / "style.jsonl", [(f"question {i}", r) for i, r in enumerate(STYLE)])
    baseline = root / "base_replies.jsonl"
    baseline.write_text("".join(json.dumps({"reply": r}) + "\n" for r in BASE))
    return root, store, apps, questions, style, baseline


def test_eval_app_writes_the_side_by_side_report(setup, capsys):
    root, store, apps, questions, style, baseline = setup
    engine, judge = FakeEngine(), FakeEngine(base="judge")
    engine.adapters["voice"] = "/adapters/voice"
    engine.reply = "Returns are accepted within 45 days [1]. Happy brewing!"
    judge.reply = "CORRECT"
    out = root / "report"
    with ServerThread(engine.app) as server, ServerThread(judge.app) as judge_server:
        code = main(
            [
                "--data-dir", store, "eval", "app", "pip", str(questions),
                "--against", "plain", "--apps", str(apps), "--engine-url", server.url,
                "--style", str(style), "--style-baseline", str(baseline),
                "--judge-url", judge_server.url, "--judge-model", "judge",
                "--out", str(out), "--max-tokens", "30", "-q",
            ]
        )  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert stdout.startswith("pip: correct 33% (1/3), voice ")
    assert f"report in {out / 'report.md'}" in stdout
    # what the engine was asked: each app's model, the prior turns before the question
    models = [r["model"] for r in engine.requests]
    assert models == ["voice"] * 3 + ["base"] * 3  # the unanswerable one was not generated
    follow_up = engine.requests[2]["messages"]
    assert [m["role"] for m in follow_up[1:]] == ["user", "assistant", "user"]
    assert follow_up[-1]["content"] == QUESTIONS[2]["question"]
    assert all(r["max_tokens"] == 30 and r["temperature"] == 0 for r in engine.requests)

    report = json.loads((out / "report.json").read_text())
    pip, plain = report["summaries"]
    assert pip["app"] == "pip" and plain["app"] == "plain"
    assert pip["correctness"] == {"rate": 1 / 3, "hits": 1, "n": 3}
    assert pip["correctness_multi_turn"] == {"rate": 0.0, "hits": 0, "n": 1}
    assert pip["abstained_when_unanswerable"] == {"rate": 1.0, "hits": 1, "n": 1}
    assert pip["abstention"]["rate"] == 1.0
    assert pip["judge"] == {"rate": 1.0, "hits": 3, "n": 3}  # reported apart from correctness
    # the fixed reply cites [1], each time the one passage shown: the gold one (even when the
    # answer's figure is wrong, for the warranty question)
    cited = [r["cited_gold"] for r in report["results"]["pip"]]
    assert cited == [True, True, True, None]
    assert [r["correct"] for r in report["results"]["pip"]] == [True, False, False, None]
    # "45 days" is not in the warranty passage (flagged), but in the refunds one (passed)
    assert [r["grounded"] for r in report["results"]["pip"]] == [True, False, True, None]
    assert pip["grounding"] == {
        "precision": 1.0,
        "recall": 0.5,
        "flagged": 1,
        "wrong": 2,
        "n": 3,
    }
    assert pip["tokens"]["completion"] == 3 * len(engine.reply.split())
    assert pip["latency_s"]["mean"] > 0
    voice = report["voice_validation"]
    assert voice["auc"] >= 0.75 and voice["heldout_style"] == 2
    assert pip["voice"]["n"] == 3 and 0 < pip["voice"]["mean"] < 1

    md = (out / "report.md").read_text()
    assert "| | pip | plain |" in md and "(follow-up)" in md and "(unanswerable)" in md
    assert (out / "chart.png").read_bytes()[:4] == b"\x89PNG"
    key = json.loads((out / "ab_key.json").read_text())
    assert key["apps"] == ["pip", "plain"] and len(key["questions"]) == 4
    sheet = (out / "ab_sheet.html").read_text()
    assert "pip" not in sheet and "plain" not in sheet
    assert sheet.count("45 days") == 6  # three generated answers per app, none names its app


@pytest.mark.parametrize(
    ("app", "content", "expected"),
    [
        ("ghost", None, "unknown app 'ghost'; apps known: pip, plain"),
        ("pip", '{"question": "ok"}\n{"question": oops}\n', "bad.jsonl:2: not valid JSON"),
        ("pip", "\n", "bad.jsonl:1: no labelled questions in the file"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(setup, capsys, tmp_path, app, content, expected):
    _, store, apps, questions, *_ = setup
    path = questions
    if content is not None:
        path = tmp_path / "bad.jsonl"
        path.write_text(content)
    code = main(["--data-dir", store, "eval", "app", app, str(path), "--apps", str(apps)])
    _, stderr = capsys.readouterr()
    assert code == 2
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and expected in stderr


def test_eval_adapter_keeps_its_old_behaviour_under_the_group(capsys, tmp_path):
    code = main(["eval", "adapter", str(tmp_path / "missing")])
    _, stderr = capsys.readouterr()
    assert code == 1 and "missing" in stderr and stderr.count("\n") == 1


def test_gateway_mode_scores_like_in_process(setup, tmp_path, tiny_llama_dir):
    """The same apps behind the real gateway (over the fake engine), asked through the official
    openai client: the same answers, citations and no-context path as in-process."""
    import httpx
    import openai
    from fastapi.testclient import TestClient

    from hybrid.apps.app import open_pipeline
    from hybrid.apps.composer import AppComposer
    from hybrid.apps.spec import load_app_spec
    from hybrid.evaluation.responders import GatewayResponder
    from hybrid.evaluation.runner import AppEvalSettings, evaluate_apps
    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
    from serving.adapters import AdapterRegistry, describe_base
    from serving.adapters.manager import AdapterManager
    from serving.engine import EngineClient, EngineSet, Replica
    from serving.gateway import GatewayConfig, GatewayState, create_app
    from tests.helpers.adapters import random_lora

    _root, store, apps, questions, *_ = setup
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=store))
    registry = AdapterRegistry(tmp_path / "registry", describe_base(tiny_llama_dir), 16)
    registry.register(random_lora(tiny_llama_dir, tmp_path / "lora"), "voice")
    engine = FakeEngine()
    engine.reply = "Returns are accepted within 45 days [1]. Happy brewing!"
    client = EngineClient("http://fake", transport=httpx.ASGITransport(engine.app))
    manager = AdapterManager(registry, EngineSet([Replica(client)]), "base")
    pipelines = [open_pipeline(load_app_spec(f), catalog) for f in sorted(apps.glob("*.yaml"))]
    state = GatewayState.build(
        GatewayConfig(), manager, composers=[AppComposer(pipelines, "base", None)]
    )
    with TestClient(create_app(state)) as http:
        sdk = openai.OpenAI(
            base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0
        )
        settings = AppEvalSettings(
            apps=("pip", "plain"), questions=questions, output_dir=tmp_path / "out"
        )
        report = evaluate_apps(settings, GatewayResponder("http://testserver", client=sdk), False)
        together = evaluate_apps(
            settings.model_copy(update={"concurrency": 3, "output_dir": tmp_path / "out3"}),
            GatewayResponder("http://testserver", client=sdk),
            False,
        )
        with pytest.raises(UsageError, match="unknown app 'ghost'; apps available: pip, plain"):
            evaluate_apps(
                settings.model_copy(update={"apps": ("ghost",)}),
                GatewayResponder("http://testserver", client=sdk),
                False,
            )
    # three at a time: the same scores, in the question file's order
    assert together["settings"]["concurrency"] == 3
    keep = ("question", "correct", "cited_gold", "abstained", "answer")
    assert [{k: r[k] for k in keep} for r in together["results"]["pip"]] == [
        {k: r[k] for k in keep} for r in report["results"]["pip"]
    ]
    engine.requests = engine.requests[:6]
    assert [r["model"] for r in engine.requests] == ["voice@v1"] * 3 + ["base"] * 3
    pip = report["results"]["pip"]
    assert [r["correct"] for r in pip] == [True, False, False, None]
    assert [r["cited_gold"] for r in pip] == [True, True, True, None]
    assert [r["abstained"] for r in pip] == [False, False, False, True]
    assert report["settings"]["mode"] == "gateway"
    assert report["summaries"][0]["tokens"]["completion"] >= 3 * len(engine.reply.split())
