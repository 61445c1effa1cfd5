"""A Chroma server that goes away under a running app: app requests get 503 with a clear
message and Retry-After (never a traceback), ingestion reports it, nothing is half-written, and
the app answers again once the same server is back."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from hybrid.apps.app import open_pipeline
from hybrid.apps.composer import AppComposer
from hybrid.apps.spec import AppSpec
from retrieval import KnowledgeBaseCatalog, ServerStoreConfig, StoreUnavailable
from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.manager import AdapterManager
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import GatewayConfig, GatewayState, create_app
from tests.conftest import ChromaServer
from tests.helpers.reliability import record
from tests.serving.fake_engine import FakeEngine

pytestmark = pytest.mark.server

QUESTION = [{"role": "user", "content": "How long is the refund window?"}]


@pytest.mark.reliability
def test_app_survives_a_chroma_outage(tmp_path, tiny_llama_dir):
    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log").start()
    try:
        store = ServerStoreConfig(port=server.port, timeout_s=5)
        catalog = KnowledgeBaseCatalog(store)
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "refunds.md").write_text("Refunds are accepted within 30 days of delivery.")
        kb = catalog.create("outage-kb")
        kb.ingest([docs], progress=False)
        chunks = kb.stats().chunks

        spec = AppSpec(name="helpdesk", knowledge_base="outage-kb", persona="You help.")
        engine = FakeEngine()
        client = EngineClient("http://fake", transport=httpx.ASGITransport(engine.app))
        registry = AdapterRegistry(tmp_path / "registry", describe_base(tiny_llama_dir), 16)
        manager = AdapterManager(registry, EngineSet([Replica(client)]), "base")
        composer = AppComposer([open_pipeline(spec, catalog)], "base")
        state = GatewayState.build(GatewayConfig(), manager, composers=[composer])
        with TestClient(create_app(state)) as http:

            def ask() -> httpx.Response:
                body = {"model": "helpdesk", "messages": QUESTION}
                return http.post("/v1/chat/completions", json=body)

            assert ask().status_code == 200

            server.stop()
            down = ask()
            assert down.status_code == 503 and down.headers["Retry-After"] == "5"
            error = down.json()["error"]
            assert error["code"] == "knowledge_base_unavailable"
            assert "'outage-kb' of app 'helpdesk' is unavailable" in error["message"]
            assert "http://" not in error["message"]  # the store's address stays in the log
            assert "Traceback" not in down.text
            (docs / "more.md").write_text("Shipping is free above 50 dollars.")
            with pytest.raises(StoreUnavailable):
                kb.ingest([docs], progress=False)

            server.start()  # same port, same data folder
            assert ask().status_code == 200
            assert kb.stats().chunks == chunks  # the failed ingestion wrote nothing
            kb.ingest([docs], progress=False)
            assert kb.stats().chunks == chunks + 1
            record(
                "Faults",
                "Chroma server stopped under a running app, then restarted",
                status_while_down=down.status_code,
                ingestion_while_down="refused, nothing written",
                served_after_restart=True,
                lost=0,
            )
    finally:
        server.stop()
