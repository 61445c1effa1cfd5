"""Files and folders -> records: JSON / JSON Lines objects and whole text files, each with origin.

Nothing here knows a dataset format; `finetune.data.formats` turns records into examples. Every
problem is collected (with `file:line`), never raised one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON_SUFFIXES = (".json", ".jsonl")
TEXT_SUFFIXES = (".txt", ".md")
SUPPORTED_SUFFIXES = JSON_SUFFIXES + TEXT_SUFFIXES


@dataclass(frozen=True)
class Record:
    """One JSON object, or one whole text file as {"text": ...}."""

    origin: str
    """`file:line` (JSON Lines), `file:#index` (JSON array, 0-based) or `file` (text file)."""
    data: Mapping[str, Any]
    position: int = 0
    """Line or index, so problems of one file can be listed in file order."""
    from_text_file: bool = False


@dataclass
class FileRecords:
    path: Path
    records: list[Record] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)
    """(position, `origin: problem`) pairs."""


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Files given, plus supported files inside folders given (recursive, hidden ones skipped).

    Returns the files in a stable order and a problem per path that gives nothing to read.
    """
    files: list[Path] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in SUPPORTED_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
            if not found:
                problems.append(f"{path}: no {_suffix_list()} files in this folder")
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                problems.append(
                    f"{path}: unsupported file type '{path.suffix}' (supported: {_suffix_list()})"
                )
                continue
            found = [path]
        else:
            problems.append(f"{path}: path not found")
            continue
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, problems


def read_records(path: Path) -> FileRecords:
    """Every record of one file; unreadable lines become problems, the others are kept."""
    result = FileRecords(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.problems.append((0, f"{path}: cannot read file ({exc.strerror})"))
        return result
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark from some editors
    if not data.strip():
        result.problems.append((0, f"{path}: empty file"))
        return result
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        _read_text(path, data, result)
    elif suffix == ".json" and not _read_json_document(path, data, result):
        _read_json_lines(path, data, result)  # a JSON Lines file named .json
    elif suffix == ".jsonl":
        _read_json_lines(path, data, result)
    return result


def _read_text(path: Path, data: bytes, result: FileRecords) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        result.problems.append((0, f"{path}: {_not_utf8(exc)}"))
        return
    result.records.append(Record(str(path), {"text": text}, from_text_file=True))


def _read_json_document(path: Path, data: bytes, result: FileRecords) -> bool:
    """Read a whole-file JSON array (or one object). False if it is really JSON Lines."""
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        result.problems.append((0, f"{path}: {_not_utf8(exc)}"))
        return True
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several documents, one per line
            return False
        result.problems.append(
            (exc.lineno, f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})")
        )
        return True
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        origin = f"{path}:#{index}"
        if isinstance(item, dict):
            result.records.append(Record(origin, item, index))
        else:
            result.problems.append((index, f"{origin}: {_not_object(item)}"))
    return True


def _read_json_lines(path: Path, data: bytes, result: FileRecords) -> None:
    # Split on b"\n" only: str.splitlines() would also cut at U+2028 inside JSON strings.
    for number, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        origin = f"{path}:{number}"
        try:
            item = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            result.problems.append((number, f"{origin}: {_not_utf8(exc)}"))
            continue
        except json.JSONDecodeError as exc:
            result.problems.append(
                (number, f"{origin}: not valid JSON ({exc.msg} at column {exc.colno})")
            )
            continue
        if isinstance(item, dict):
            result.records.append(Record(origin, item, number))
        else:
            result.problems.append((number, f"{origin}: {_not_object(item)}"))


def _not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); re-save the file as UTF-8"


def _not_object(item: object) -> str:
    return f"expected a JSON object {{...}}, got {json_kind(item)}"


def json_kind(value: object) -> str:
    """How a JSON value reads in a message: 'a number', 'a list', ..."""
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list"}
    kinds |= {dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _suffix_list() -> str:
    return ", ".join(SUPPORTED_SUFFIXES)
