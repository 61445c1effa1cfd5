"""`hybrid data check`: the report, exit codes, and one-line errors."""

from __future__ import annotations

import json

from hybrid.cli import main
from tests.finetune.datasets import varied_chats, write_jsonl


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def alpaca_file(path, n: int):
    records = [
        {"instruction": e.messages[0].content, "output": e.messages[1].content}
        for e in varied_chats(n)
    ]
    return write_jsonl(path, records)


def test_check_prints_the_report_and_exits_0_without_errors(capsys, tmp_path, tiny_llama_dir):
    path = alpaca_file(tmp_path / "style.jsonl", 40)
    code, out, err = run(
        capsys,
        "data",
        "check",
        str(path),
        "--tokenizer",
        str(tiny_llama_dir),
        "--max-length",
        "512",
    )
    assert code == 0, err
    assert out.startswith("40 examples (40 conversations, 0 raw texts) -> 40 training samples")
    assert "max length 512 (tokenizer model)" in out
    assert "warning few-samples: only 40 training samples" in out
    assert out.rstrip().endswith(
        "result: 0 errors, 1 warning; ready to train, read the warnings first"
    )
    assert err == ""


def test_check_exits_1_on_report_errors_and_json_is_parseable(capsys, tmp_path):
    path = alpaca_file(tmp_path / "style.jsonl", 5)
    code, out, err = run(capsys, "data", "check", str(path), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["examples"] == 5
    assert {f["code"] for f in report["findings"]} == {"too-few-samples", "no-tokenizer"}
    assert err.startswith("note: no --tokenizer given; lengths are whitespace-word estimates")


def test_load_problems_are_one_line(capsys, tmp_path):
    path = write_jsonl(
        tmp_path / "style.jsonl",
        [{"instruction": "Q", "output": "A"}, "{oops", {"instruction": "Q"}],
    )
    code, out, err = run(capsys, "data", "check", str(path))
    assert code == 1 and out == ""
    assert err == (
        f"error: data: 2 problems: {path}:2: not valid JSON (Expecting property name "
        f"enclosed in double quotes at column 2); {path}:3: missing field 'output'\n"
    )


def test_bad_options_are_one_line(capsys, tmp_path):
    path = alpaca_file(tmp_path / "style.jsonl", 3)
    code, _, err = run(capsys, "data", "check", str(path), "--format", "csv")
    assert code == 1 and err.startswith("error: unknown data format 'csv'; available: auto")
    assert err.count("\n") == 1
    code, _, err = run(capsys, "data", "check", str(path), "--tokenizer", str(tmp_path / "nope"))
    assert code == 1 and err.startswith(f"error: tokenizer folder not found: {tmp_path / 'nope'}")
    assert err.count("\n") == 1 and "Traceback" not in err
