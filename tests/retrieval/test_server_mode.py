"""Client-server mode against a real `chroma run` server started by the test session."""

from __future__ import annotations

import pytest

from hybrid.cli import main
from retrieval import (
    KnowledgeBaseCatalog,
    QueryOptions,
    ServerStoreConfig,
    StoreUnavailable,
)
from tests.conftest import free_port
from tests.helpers.documents import write_corpus, write_pdf

pytestmark = pytest.mark.server


def test_kb_lifecycle_on_a_chroma_server(chroma_server, tmp_path):
    catalog = KnowledgeBaseCatalog(ServerStoreConfig(port=chroma_server.port))
    docs = tmp_path / "docs"
    write_corpus(docs, n_files=3)
    write_pdf(docs / "report.pdf", ["Intro", "Operating income reached 48.1 million dollars."])
    kb = catalog.create("server-kb")
    first = kb.ingest([docs], progress=False)
    assert first.files_added == 4
    assert kb.ingest([docs], progress=False).chunks_added == 0

    hits = kb.query("operating income", QueryOptions(top_k=2, mode="hybrid"))
    assert hits[0].citation.file_name == "report.pdf" and hits[0].citation.page == 2

    # a second client sees the same data: the server holds it, not this process
    other = KnowledgeBaseCatalog(ServerStoreConfig(port=chroma_server.port)).open("server-kb")
    assert other.stats().chunks == kb.stats().chunks
    catalog.delete("server-kb")
    assert "server-kb" not in catalog.names()


def test_cli_uses_the_server_from_config(chroma_server, tmp_path, capsys):
    config = tmp_path / "hybrid.yaml"
    config.write_text(f"store:\n  mode: server\n  port: {chroma_server.port}\n", encoding="utf-8")
    assert main(["--config", str(config), "kb", "create", "cli-server-kb"]) == 0
    out = capsys.readouterr().out
    assert f"Chroma server http://127.0.0.1:{chroma_server.port}" in out
    assert main(["--config", str(config), "kb", "list"]) == 0
    assert "cli-server-kb" in capsys.readouterr().out


def test_unreachable_server_is_one_clear_error(capsys, tmp_path):
    port = free_port()  # nothing listens here
    with pytest.raises(
        StoreUnavailable, match=f"cannot reach Chroma server http://127.0.0.1:{port}"
    ):
        KnowledgeBaseCatalog(ServerStoreConfig(port=port, timeout_s=2))
    config = tmp_path / "hybrid.yaml"
    config.write_text(f"store:\n  mode: server\n  port: {port}\n", encoding="utf-8")
    assert main(["--config", str(config), "kb", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach Chroma server") and "chroma run" in err
    assert err.count("\n") == 1


def test_embedded_and_server_clients_stay_apart(chroma_server, tmp_path):
    from retrieval import EmbeddedStoreConfig

    server = KnowledgeBaseCatalog(ServerStoreConfig(port=chroma_server.port))
    server.create("only-on-server")
    try:
        embedded = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=tmp_path / "emb"))
        assert "only-on-server" not in embedded.names()
        embedded.create("only-embedded")
        assert "only-embedded" not in server.names()
    finally:
        server.delete("only-on-server")
