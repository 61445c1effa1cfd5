"""Reading training data: every format, auto-detection, and every problem named with file:line."""

from __future__ import annotations

import json

import pytest

from finetune.data import Example, Message, available_formats, load_dataset
from finetune.errors import DatasetError, FinetuneError
from tests.finetune.datasets import write_jsonl


def problems_of(paths, format="auto") -> list[str]:
    with pytest.raises(DatasetError) as info:
        load_dataset(paths, format=format)
    return info.value.problems


def test_alpaca_joins_instruction_and_input_and_keeps_the_system_prompt(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"instruction": "Greet", "output": "Hello!"},
            {"instruction": "Greet", "input": "Bob", "output": "Hi Bob.", "system": "Be warm."},
            {"instruction": "Greet", "input": "", "output": "Hey.", "system": None},
        ],
    )
    examples = load_dataset(path)
    assert examples[0] == Example(
        f"{path}:1", (Message("user", "Greet"), Message("assistant", "Hello!"))
    )
    assert examples[1].messages == (
        Message("system", "Be warm."),
        Message("user", "Greet\n\nBob"),
        Message("assistant", "Hi Bob."),
    )
    assert examples[2].messages[0] == Message("user", "Greet")


def test_alpaca_json_array_origins_are_indexes(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "Q", "output": "A"}] * 2), encoding="utf-8")
    assert [e.origin for e in load_dataset(path)] == [f"{path}:#0", f"{path}:#1"]


def test_sharegpt_maps_speakers_to_roles(tmp_path):
    path = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {
                "conversations": [
                    {"from": "system", "value": "Speak plainly."},
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello."},
                    {"from": "user", "value": "And?"},
                    {"from": "model", "value": "That is all."},
                ]
            }
        ],
    )
    (example,) = load_dataset(path)
    assert [(m.role, m.content) for m in example.messages] == [
        ("system", "Speak plainly."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "And?"),
        ("assistant", "That is all."),
    ]


def test_openai_chat_keeps_weights_and_system(tmp_path):
    path = write_jsonl(
        tmp_path / "o.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Q1"},
                    {"role": "assistant", "content": "Draft", "weight": 0},
                    {"role": "user", "content": "Q2"},
                    {"role": "assistant", "content": [{"type": "text", "text": "Final"}]},
                ]
            }
        ],
    )
    (example,) = load_dataset(path, format="openai")
    assert example.messages == (
        Message("system", "Be brief."),
        Message("user", "Q1"),
        Message("assistant", "Draft", weight=0),
        Message("user", "Q2"),
        Message("assistant", "Final", weight=1),
    )


def test_raw_corpus_folder_keeps_long_documents_whole(tmp_path):
    corpus = tmp_path / "letters"
    (corpus / "2019").mkdir(parents=True)
    long_letter = "Dear fellow owners, we kept a steady keel.\n" * 2000
    (corpus / "2019" / "letter.md").write_text(long_letter, encoding="utf-8")
    (corpus / "note.txt").write_text("Short note.", encoding="utf-8")
    (corpus / ".hidden.txt").write_text("skipped", encoding="utf-8")
    (corpus / "image.png").write_bytes(b"\x89PNG")
    examples = load_dataset(corpus, format="raw")
    assert [(e.origin, e.is_chat) for e in examples] == [
        (str(corpus / "2019" / "letter.md"), False),
        (str(corpus / "note.txt"), False),
    ]
    assert examples[0].text == long_letter


def test_auto_detects_each_file_from_its_first_record(tmp_path):
    write_jsonl(tmp_path / "1_alpaca.jsonl", [{"instruction": "Q", "output": "A"}])
    write_jsonl(
        tmp_path / "2_sharegpt.jsonl",
        [{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}],
    )
    write_jsonl(
        tmp_path / "3_openai.jsonl",
        [{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}],
    )
    write_jsonl(tmp_path / "4_raw.jsonl", [{"text": "In our voice."}])
    (tmp_path / "5_style.txt").write_text("Also in our voice.", encoding="utf-8")
    examples = load_dataset([tmp_path])
    qa = (Message("user", "Q"), Message("assistant", "A"))
    assert [e.messages for e in examples[:3]] == [qa, qa, qa]
    assert [e.text for e in examples[3:]] == ["In our voice.", "Also in our voice."]


def test_undetectable_format_names_the_keys_and_the_fix(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "Q", "completion": "A"}])
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:1: cannot tell the data format from the first record")
    assert "(keys: completion, prompt)" in problem
    assert "`conversations` (sharegpt)" in problem and "or pass --format" in problem


def test_every_malformed_line_is_reported_with_file_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "style.jsonl",
        [
            {"instruction": "Q", "output": "A"},
            '{"instruction": "Q" "output": "A"}',
            "[1, 2]",
            '{"instruction": "Q", "output": "A"',
            {"instruction": "Q", "output": "A"},
        ],
    )
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert info.value.problems == [
        f"{path}:2: not valid JSON (Expecting ',' delimiter at column 21)",
        f"{path}:3: expected a JSON object {{...}}, got a list",
        f"{path}:4: not valid JSON (Expecting ',' delimiter at column 35)",
    ]
    message = str(info.value)
    assert message.startswith("data: 3 problems: ") and "\n" not in message
    assert isinstance(info.value, FinetuneError) and isinstance(info.value, ValueError)


def test_structural_problems_are_all_reported(tmp_path):
    alpaca = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"instruction": "Q", "output": "A"},
            {"instruction": "Q"},
            {"instruction": "", "output": 3},
        ],
    )
    openai = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"messages": [{"role": "user", "content": "Q"}, {"role": "bot", "content": "A"}]},
            {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": ""}]},
            {
                "messages": [
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A", "weight": 0.5},
                ]
            },
            {
                "messages": [
                    {"role": "user", "content": "Q", "weight": 1},
                    {"role": "assistant", "content": "A"},
                ]
            },
            {
                "messages": [
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A"},
                    {"role": "user", "content": "Q2"},
                ]
            },
            {
                "messages": [
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A", "weight": 0},
                ]
            },
        ],
    )
    sharegpt = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"conversations": [{"from": "human", "value": "Q"}, {"from": "bing", "value": "A"}]},
            {"conversations": []},
        ],
    )
    assert problems_of([alpaca, openai, sharegpt]) == [
        f"{alpaca}:2: missing field 'output'",
        f"{alpaca}:3: field 'instruction' is empty",
        f"{alpaca}:3: field 'output' must be text, got a number",
        f"{openai}:1: messages[1].role 'bot' is not supported (use system, user or assistant; tool calls are not supported)",
        f"{openai}:2: messages[1]: field 'content' is empty",
        f"{openai}:3: messages[1].weight 0.5 must be 0 or 1",
        f"{openai}:4: messages[0].weight is only allowed on assistant messages",
        f"{openai}:5: conversation ends with a user turn; end it with the assistant's reply (or drop the trailing turn)",
        f"{openai}:6: every assistant message has weight 0, so nothing would be trained; set weight 1 on the replies to learn",
        f"{sharegpt}:1: conversations[1].from 'bing' is not a known speaker (use human/user, gpt/assistant/model or system)",
        f"{sharegpt}:2: field 'conversations' is an empty list",
    ]


def test_problem_listing_is_capped_but_all_are_kept(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Q", "output": "A"}] + ["{"] * 25)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert len(info.value.problems) == 25
    assert str(info.value).count("not valid JSON") == 20
    assert str(info.value).endswith("; and 5 more")


def test_paths_and_formats_that_give_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "data.csv").write_text("a,b\n", encoding="utf-8")
    (tmp_path / "blank.jsonl").write_text("\n\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("raw", encoding="utf-8")
    assert problems_of(
        [
            tmp_path / "missing.jsonl",
            tmp_path / "empty",
            tmp_path / "data.csv",
            tmp_path / "blank.jsonl",
        ]
    ) == [
        f"{tmp_path / 'missing.jsonl'}: path not found",
        f"{tmp_path / 'empty'}: no .json, .jsonl, .txt, .md files in this folder",
        f"{tmp_path / 'data.csv'}: unsupported file type '.csv' (supported: .json, .jsonl, .txt, .md)",
        f"{tmp_path / 'blank.jsonl'}: empty file",
    ]
    assert problems_of(tmp_path / "notes.txt", format="alpaca") == [
        f"{tmp_path / 'notes.txt'}: a text file is raw text, not alpaca; use --format auto or raw"
    ]
    with pytest.raises(DatasetError, match="unknown data format 'csv'; available: auto, alpaca"):
        load_dataset(tmp_path / "notes.txt", format="csv")
    assert available_formats() == ["auto", "alpaca", "sharegpt", "openai", "raw"]
    (tmp_path / "none.json").write_text("[]", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"no examples in .*none.json \(only empty JSON"):
        load_dataset(tmp_path / "none.json")
    with pytest.raises(DatasetError, match="no data paths given; pass at least one file"):
        load_dataset([])


def test_invalid_utf8_line_is_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        b'{"instruction": "Q", "output": "A"}\n{"instruction": "\xff", "output": "A"}\n'
    )
    assert problems_of(path) == [
        f"{path}:2: not UTF-8 text (byte 0xff at offset 17); re-save the file as UTF-8"
    ]


def test_prompt_sets_may_end_with_the_user_turn_but_training_data_may_not(tmp_path):
    path = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"messages": [{"role": "user", "content": "Tell me about safety."}]},
            {"messages": [{"role": "system", "content": "Be brief."}]},
            {
                "messages": [
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A", "weight": 0},
                ]
            },
        ],
    )
    assert problems_of(path) == [
        f"{path}:1: conversation ends with a user turn; end it with the assistant's reply "
        "(or drop the trailing turn)",
        f"{path}:2: conversation ends with a system turn; end it with the assistant's reply "
        "(or drop the trailing turn)",
        f"{path}:3: every assistant message has weight 0, so nothing would be trained; "
        "set weight 1 on the replies to learn",
    ]
    with pytest.raises(DatasetError) as info:
        load_dataset(path, prompts=True)
    assert info.value.problems == [
        f"{path}:2: prompt has no user turn to answer (it ends with a system turn); "
        "end it with the user's message"
    ]
    (path.parent / "ok.jsonl").write_text(path.read_text().splitlines()[0] + "\n")
    (prompt,) = load_dataset(path.parent / "ok.jsonl", prompts=True)
    assert prompt.messages == (Message("user", "Tell me about safety."),)


def test_a_training_file_is_a_prompt_set_but_raw_text_is_not(tmp_path):
    chats = write_jsonl(tmp_path / "style.jsonl", [{"instruction": "Q", "output": "A"}])
    assert [e.messages[-1].role for e in load_dataset(chats, prompts=True)] == ["assistant"]
    (tmp_path / "letter.txt").write_text("Dear fellow owners,", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path / "letter.txt", prompts=True)
    assert info.value.problems == [
        f"{tmp_path / 'letter.txt'}: raw text is not a prompt; give chat records ending with the "
        "user's message"
    ]
