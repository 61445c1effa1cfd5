"""The `hybrid` CLI: short output, one-line errors with the fix, non-zero exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.cli import main
from tests.helpers.documents import write_corpus, write_pdf


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def kb_dir(tmp_path):
    return str(tmp_path / "store")


def test_full_kb_lifecycle(capsys, tmp_path, kb_dir):
    docs = tmp_path / "docs"
    write_corpus(docs, n_files=3)
    write_pdf(docs / "report.pdf", ["Cover page", "Net income was 12.5 million dollars in 2025."])

    def kb(*args: str) -> tuple[int, str, str]:
        return run(capsys, "--data-dir", kb_dir, "kb", *args)

    assert kb("create", "acme-docs", "--chunk-size", "64", "--chunk-overlap", "8")[0] == 0
    code, out, _ = kb("ingest", "acme-docs", str(docs), "-q")
    assert code == 0 and "4 files: 4 added" in out

    code, out, _ = kb("ingest", "acme-docs", str(docs), "-q")
    assert code == 0 and "+0 / -0 chunks" in out and "4 unchanged" in out

    code, out, _ = kb("query", "acme-docs", "net income 2025", "-k", "2", "--mode", "hybrid")
    assert code == 0 and out.startswith("[1] ") and "report.pdf p.2" in out

    filters = ["--filter", "file_name=report.pdf", "--filter", "page=2"]
    code, out, _ = kb("query", "acme-docs", "net income", "--json", *filters)
    hits = json.loads(out)
    assert code == 0 and hits and all(h["citation"]["page"] == 2 for h in hits)

    code, out, _ = kb("list")
    assert code == 0 and out.startswith("acme-docs\t")

    code, out, _ = kb("chunks", "acme-docs", "-f", "report.pdf")
    lines = out.splitlines()
    assert code == 0 and lines[-1] == f"{len(lines) - 1} chunks from 1 file"
    assert (
        lines[0].startswith("report.pdf p.1 [0:") and "1/" in lines[0] and "Cover page" in lines[0]
    )
    assert all(len(line) < 160 for line in lines)
    code, out, _ = kb("chunks", "acme-docs", "--json")
    listed = json.loads(out)
    assert code == 0 and {c["citation"]["file_name"] for c in listed} >= {
        "report.pdf",
        "doc-000.md",
    }

    code, out, _ = kb("stats", "acme-docs", "--json")
    stats = json.loads(out)
    assert stats["files"] == 4 and stats["file_types"] == {"md": 3, "pdf": 1}

    assert kb("delete", "acme-docs", "--yes")[0] == 0
    code, out, _ = kb("list")
    assert "no knowledge bases" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["kb", "query", "ghost-kb", "hello"],
            "unknown knowledge base 'ghost-kb' (existing: real-kb)",
        ),
        (["kb", "query", "real-kb", "  "], "empty query"),
        (
            ["kb", "ingest", "real-kb", "/definitely/not/here"],
            "path not found: /definitely/not/here",
        ),
        (["kb", "create", "real-kb"], "already exists"),
        (["kb", "chunks", "ghost-kb"], "unknown knowledge base 'ghost-kb' (existing: real-kb)"),
        (
            ["kb", "chunks", "real-kb", "--file", "nope.md"],
            "knowledge base 'real-kb' has no file 'nope.md' (files: none yet)",
        ),
        (["kb", "create", "X"], "invalid knowledge base name 'X'"),
        (["kb", "query", "real-kb", "hi", "--filter", "oops"], "bad --filter 'oops'"),
        (
            ["kb", "query", "real-kb", "hi", "--mode", "fuzzy"],
            "mode: Input should be 'vector' or 'hybrid'",
        ),
        (
            ["kb", "create", "other-kb", "--chunk-size", "32", "--chunk-overlap", "40"],
            "chunk_overlap (40) must be smaller than chunk_size (32)",
        ),
        (
            ["kb", "create", "other-kb", "--boundaries", "words"],
            "boundaries: Input should be 'structure' or 'sentences'",
        ),
        (
            ["kb", "query", "real-kb", "hi", "--context-chars", "-5"],
            "context_chars: Input should be greater than or equal to 0",
        ),
    ],
)
def test_errors_are_one_line_with_the_fix(capsys, kb_dir, args, message):
    assert run(capsys, "--data-dir", kb_dir, "kb", "create", "real-kb")[0] == 0
    code, _out, err = run(capsys, "--data-dir", kb_dir, *args)
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_config_file_lists_every_problem(capsys, tmp_path):
    config = tmp_path / "hybrid.yaml"
    config.write_text(
        "store:\n  mode: server\n  port: 70000\n  colour: red\nknowledge_base_defaults:\n"
        "  chunking: {chunk_size: 8}\n",
        encoding="utf-8",
    )
    code, _, err = run(capsys, "--config", str(config), "kb", "list")
    assert code == 1
    assert "3 problem(s)" in err
    assert "store.server.port" in err and "70000" in err
    assert "store.server.colour: Extra inputs are not permitted" in err
    assert "knowledge_base_defaults.chunking.chunk_size" in err


def test_config_yaml_error_names_the_line(capsys, tmp_path):
    config = tmp_path / "hybrid.yaml"
    config.write_text("store:\n  mode: [embedded\n", encoding="utf-8")
    code, _, err = run(capsys, "--config", str(config), "kb", "list")
    assert code == 1 and "not valid YAML" in err and "line" in err


def test_config_store_path_is_relative_to_the_config_file(capsys, tmp_path, monkeypatch):
    config = tmp_path / "proj" / "hybrid.yaml"
    config.parent.mkdir()
    config.write_text("store:\n  mode: embedded\n  path: data/chroma\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, _out, _ = run(capsys, "--config", str(config), "kb", "create", "rel-kb")
    assert code == 0 and (tmp_path / "proj" / "data" / "chroma").is_dir()


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "hybrid"
    result = subprocess.run([str(exe), "kb", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("create", "ingest", "query", "list", "stats", "delete"):
        assert command in result.stdout
