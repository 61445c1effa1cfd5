"""The real chat model: SmolLM2-135M-Instruct served by vLLM on the CPU behind the gateway,
answering questions about the Northwind annual report (PDF) as an app. The answer must state
the figure from the report, cite the page it is on, and be grounded; an unrelated question gets
the no-context answer. Costs a vLLM start (~80 s) and a few generations."""

from __future__ import annotations

import openai
import pytest
from pypdf import PdfReader

from hybrid.apps.app import open_pipeline
from hybrid.apps.budget import PromptBudget
from hybrid.apps.composer import AppComposer
from hybrid.apps.spec import AppSpec
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineConfig, EngineProcess, EngineSet
from serving.gateway import GatewayConfig, GatewayMetrics, GatewayState, create_app
from tests.conftest import EXAMPLES
from tests.helpers.gateway import ServerThread

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPORT = EXAMPLES / "ceo-report-qa" / "docs"


@pytest.fixture(scope="module")
def smollm2_gateway(tmp_path_factory):
    from finetune.base_models import prepare_default_model

    root = tmp_path_factory.mktemp("smollm2-app")
    model = prepare_default_model()
    catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root / "chroma"))
    catalog.create("northwind-report").ingest([REPORT])
    spec = AppSpec(
        name="northwind",
        knowledge_base="northwind-report",
        persona="You are the investor relations assistant of Northwind Robotics.",
        retrieval={"top_k": 2, "mode": "hybrid"},
        generation={"max_tokens": 60, "temperature": 0},
        no_context={"message": "The annual report does not cover that."},
    )
    engine = EngineProcess(
        EngineConfig(
            model=str(model),
            served_model_name="smollm2",
            max_model_len=2048,
            max_lora_rank=8,
            kv_cache_gib=1,
            log_file=root / "vllm.log",
            startup_timeout_s=600,
        )
    ).start()
    try:
        registry = AdapterRegistry(root / "registry", describe_base(model), 8)
        manager = AdapterManager(registry, EngineSet.build(supervised=engine), "smollm2")
        metrics = GatewayMetrics()
        pipeline = open_pipeline(spec, catalog, PromptBudget(model, 2048))
        composer = AppComposer([pipeline], "smollm2", metrics.registry)
        state = GatewayState.build(GatewayConfig(), manager, composers=[composer], metrics=metrics)
        with ServerThread(create_app(state)) as server:
            yield server
    finally:
        engine.stop()


def test_smollm2_answers_from_the_report_with_the_page(smollm2_gateway):
    client = openai.OpenAI(base_url=smollm2_gateway.url + "/v1", api_key="-", max_retries=0)
    answer = client.chat.completions.create(
        model="northwind",
        messages=[{"role": "user", "content": "What was Northwind's total revenue in 2025?"}],
    )
    text = answer.choices[0].message.content
    notes = answer.model_extra["hybrid"]
    print(f"\nSmolLM2: {text}\nnotes: {notes['citations']} {notes['grounding']}")
    assert "412.6" in text
    pages_with_figure = {
        number
        for number, page in enumerate(PdfReader(next(REPORT.glob("*.pdf"))).pages, start=1)
        if "412.6" in page.extract_text()
    }
    cited_pages = {c["page"] for c in notes["citations"]}
    assert cited_pages & pages_with_figure  # the figure is attributed to a page that states it
    assert "412.6" not in [u["text"] for u in notes["grounding"]["ungrounded"]]


def test_smollm2_app_does_not_answer_what_the_report_lacks(smollm2_gateway):
    client = openai.OpenAI(base_url=smollm2_gateway.url + "/v1", api_key="-", max_retries=0)
    answer = client.chat.completions.create(
        model="northwind",
        messages=[{"role": "user", "content": "What is the best recipe for banana bread?"}],
    )
    assert answer.choices[0].message.content == "The annual report does not cover that."
