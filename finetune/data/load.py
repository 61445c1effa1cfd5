"""`load_dataset`: files and folders in any registered format -> examples, or one error naming
every problem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from finetune.data.formats import (
    AUTO,
    DataFormat,
    RecordProblems,
    conversation_problems,
    describe_formats,
    detect_format,
    get_format,
)
from finetune.data.schema import Example
from finetune.data.sources import FileRecords, expand_paths, read_records
from finetune.errors import DatasetError

MAX_LISTED_PROBLEMS = 20


def load_dataset(
    paths: str | Path | Sequence[str | Path], format: str = AUTO, *, prompts: bool = False
) -> list[Example]:
    """Read training (or evaluation) data into examples.

    Args:
        paths: files (.jsonl, .json, .txt, .md) and folders (read recursively).
        format: `auto` (each file's format told from its first record; .txt/.md files are raw
            text), or one of `available_formats()`: alpaca, sharegpt, openai, raw.
        prompts: read a prompt set for generation instead of training data: conversations may
            end with the user turn to answer, assistant weights are not checked, raw text is
            refused.

    Raises:
        DatasetError: unknown format, or every problem of every file (malformed JSON, missing
            or empty fields, unknown roles, bad weights, conversations not ending with the
            assistant, or for prompts with the user), each as `file:line: problem`;
            `.problems` holds the full list.
    """
    forced = None if format == AUTO else get_format(format)
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    if not given:
        raise DatasetError("no data paths given; pass at least one file or folder")
    files, problems = expand_paths(given)
    examples: list[Example] = []
    for path in files:
        found = read_records(path)
        examples += _parse_file(found, forced, prompts)
        problems += [message for _, message in sorted(found.problems, key=lambda p: p[0])]
    if problems:
        raise DatasetError.from_problems(problems, "data", MAX_LISTED_PROBLEMS)
    if not examples:
        shown = ", ".join(str(p) for p in given)
        raise DatasetError(f"no examples in {shown} (only empty JSON arrays?); add examples")
    return examples


def _parse_file(found: FileRecords, forced: DataFormat | None, prompts: bool) -> list[Example]:
    """Examples of one file; its problems are added to `found.problems`."""
    if not found.records:
        return []
    first = found.records[0]
    fmt = forced or detect_format(first.data)
    if fmt is None:
        keys = ", ".join(sorted(first.data)) or "none"
        found.problems.append(
            (
                first.position,
                f"{first.origin}: cannot tell the data format from the first record "
                f"(keys: {keys}); expected {describe_formats()}, or pass --format",
            )
        )
        return []
    if first.from_text_file and not fmt.reads_text_files:
        found.problems.append(
            (0, f"{found.path}: a text file is raw text, not {fmt.name}; use --format auto or raw")
        )
        return []
    examples = []
    for record in found.records:
        try:
            parsed = fmt.parse(record.data)
        except RecordProblems as exc:
            found.problems += [(record.position, f"{record.origin}: {p}") for p in exc.problems]
            continue
        if isinstance(parsed, str):
            shape = (
                ["raw text is not a prompt; give chat records ending with the user's message"]
                if prompts
                else []
            )
        else:
            shape = conversation_problems(parsed, prompt=prompts)
        if shape:
            found.problems += [(record.position, f"{record.origin}: {p}") for p in shape]
        elif isinstance(parsed, str):
            examples.append(Example(record.origin, text=parsed))
        else:
            examples.append(Example(record.origin, messages=parsed))
    return examples
