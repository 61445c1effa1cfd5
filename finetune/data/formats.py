"""The dataset-format registry: record (dict) -> messages or raw text, with every problem named.

A format is one `@register_format` function plus a `detect` predicate for `format="auto"`.
Adding a format touches this module only. Problems say where in the record, what is wrong and,
where it is not obvious, what to write instead; `load.py` prefixes them with `file:line`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from finetune.data.schema import Message
from finetune.data.sources import json_kind
from finetune.errors import DatasetError

Parsed = tuple[Message, ...] | str
"""A conversation, or the text of a raw style sample."""
Parser = Callable[[Mapping[str, Any]], Parsed]


class RecordProblems(Exception):
    """Everything wrong with one record (raised by parsers, turned into `file:line: ...`)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class DataFormat:
    name: str
    expects: str
    """What a record looks like, for 'cannot tell the format' messages."""
    detect: Callable[[Mapping[str, Any]], bool]
    parse: Parser
    reads_text_files: bool = False


_FORMATS: dict[str, DataFormat] = {}
AUTO = "auto"


def register_format(
    name: str,
    *,
    expects: str,
    detect: Callable[[Mapping[str, Any]], bool],
    reads_text_files: bool = False,
) -> Callable[[Parser], Parser]:
    """Register a parser under `name`. Detection tries formats in registration order."""

    def decorate(parse: Parser) -> Parser:
        _FORMATS[name] = DataFormat(name, expects, detect, parse, reads_text_files)
        return parse

    return decorate


def available_formats() -> list[str]:
    return [AUTO, *_FORMATS]


def get_format(name: str) -> DataFormat:
    """Raises DatasetError naming the known formats."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise DatasetError(
            f"unknown data format '{name}'; available: {', '.join(available_formats())}"
        ) from None


def detect_format(record: Mapping[str, Any]) -> DataFormat | None:
    return next((fmt for fmt in _FORMATS.values() if fmt.detect(record)), None)


def describe_formats() -> str:
    return ", ".join(f"{fmt.expects} ({fmt.name})" for fmt in _FORMATS.values())


# --- shared field checks ---------------------------------------------------------------------


def _text(record: Mapping[str, Any], key: str, problems: list[str], *, required: bool) -> str:
    """The string under `key` ('' when absent and optional). Empty strings are problems when
    required; whitespace-only text passes here and is reported by `check_dataset`."""
    value = record.get(key)
    if value is None:
        if required:
            problems.append(
                f"missing field '{key}'" if key not in record else f"field '{key}' is null"
            )
        return ""
    if not isinstance(value, str):
        problems.append(f"field '{key}' must be text, got {json_kind(value)}")
        return ""
    if required and not value:
        problems.append(f"field '{key}' is empty")
    return value


def _turns(record: Mapping[str, Any], key: str, problems: list[str]) -> list[Any]:
    value = record.get(key)
    if not isinstance(value, list):
        got = "missing" if key not in record else f"{json_kind(value)}"
        problems.append(f"field '{key}' must be a list of turns, got {got}")
        return []
    if not value:
        problems.append(f"field '{key}' is an empty list")
    return value


def _conversation(messages: list[Message], problems: list[str]) -> tuple[Message, ...]:
    """The parsed turns, or every problem found reading them. How the conversation must end
    depends on its use (training or prompting), so `conversation_problems` checks that later."""
    if problems:
        raise RecordProblems(problems)
    return tuple(messages)


def conversation_problems(messages: tuple[Message, ...], *, prompt: bool = False) -> list[str]:
    """Rules every chat example must meet, whatever its file format.

    A training conversation ends with the assistant's reply and trains on at least one reply.
    A prompt (`prompt=True`, for generation) may end with the user turn to answer; trailing
    replies are dropped when it is used, so it needs a user turn before them.
    """
    if not messages:
        return []
    if prompt:
        turns = list(messages)
        while turns and turns[-1].role == "assistant":
            turns.pop()
        if not turns or turns[-1].role != "user":
            ended = turns[-1].role if turns else "assistant"
            return [
                f"prompt has no user turn to answer (it ends with a {ended} turn); "
                "end it with the user's message"
            ]
        return []
    problems = []
    if messages[-1].role != "assistant":
        problems.append(
            f"conversation ends with a {messages[-1].role} turn; end it with the assistant's "
            "reply (or drop the trailing turn)"
        )
    replies = [m for m in messages if m.role == "assistant"]
    if replies and not any(m.weight for m in replies):
        problems.append(
            "every assistant message has weight 0, so nothing would be trained; "
            "set weight 1 on the replies to learn"
        )
    return problems


# --- formats (detection order = registration order) ------------------------------------------


@register_format(
    "alpaca",
    expects="`instruction` + `output`",
    detect=lambda r: "instruction" in r and "conversations" not in r and "messages" not in r,
)
def parse_alpaca(record: Mapping[str, Any]) -> Parsed:
    """{"instruction", "input"?, "output", "system"?}: instruction and input make the user turn."""
    problems: list[str] = []
    instruction = _text(record, "instruction", problems, required=True)
    context = _text(record, "input", problems, required=False)
    output = _text(record, "output", problems, required=True)
    system = _text(record, "system", problems, required=False)
    user = f"{instruction}\n\n{context}" if context.strip() else instruction
    messages = [Message("system", system)] if system.strip() else []
    messages += [Message("user", user), Message("assistant", output)]
    return _conversation(messages, problems)


SHAREGPT_SPEAKERS = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}


@register_format("sharegpt", expects="`conversations`", detect=lambda r: "conversations" in r)
def parse_sharegpt(record: Mapping[str, Any]) -> Parsed:
    """{"conversations": [{"from", "value"}], "system"?}."""
    problems: list[str] = []
    turns = _turns(record, "conversations", problems)
    system = _text(record, "system", problems, required=False)
    messages = [Message("system", system)] if system.strip() else []
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            problems.append(f"{where} must be an object {{from, value}}, got {json_kind(turn)}")
            continue
        speaker = turn.get("from")
        role = SHAREGPT_SPEAKERS.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            problems.append(
                f"{where}.from {speaker!r} is not a known speaker "
                "(use human/user, gpt/assistant/model or system)"
            )
        value = _text(turn, "value", sub := [], required=True)
        problems += [f"{where}: {p}" for p in sub]
        if role is not None:
            messages.append(Message(role, value))
    return _conversation(messages, problems)


OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@register_format("openai", expects="`messages`", detect=lambda r: "messages" in r)
def parse_openai(record: Mapping[str, Any]) -> Parsed:
    """{"messages": [{"role", "content", "weight"?}]} as in OpenAI fine-tuning files."""
    problems: list[str] = []
    messages: list[Message] = []
    for i, item in enumerate(_turns(record, "messages", problems)):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object {{role, content}}, got {json_kind(item)}")
            continue
        role = OPENAI_ROLES.get(item.get("role")) if isinstance(item.get("role"), str) else None
        if role is None:
            problems.append(
                f"{where}.role {item.get('role')!r} is not supported "
                "(use system, user or assistant; tool calls are not supported)"
            )
        content = _openai_content(item, where, problems)
        weight = item.get("weight", 1)
        if role is None:
            continue
        if "weight" in item and role != "assistant":
            problems.append(f"{where}.weight is only allowed on assistant messages")
        elif isinstance(weight, bool) or weight not in (0, 1):
            problems.append(f"{where}.weight {weight!r} must be 0 or 1")
            weight = 1
        messages.append(Message(role, content, int(weight)))
    return _conversation(messages, problems)


def _openai_content(item: Mapping[str, Any], where: str, problems: list[str]) -> str:
    """Plain text, or a list of {"type": "text", "text": ...} parts joined."""
    content = item.get("content")
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) != len(content) or not all(isinstance(t, str) for t in texts):
            problems.append(f"{where}.content: only text parts are supported")
            return ""
        content = "".join(texts)
    sub: list[str] = []
    text = _text({"content": content}, "content", sub, required=True)
    if "content" not in item:
        sub = ["missing field 'content'"]
    problems += [f"{where}: {p}" for p in sub]
    return text


@register_format(
    "raw",
    expects="`text` or .txt/.md files",
    detect=lambda r: "text" in r,
    reads_text_files=True,
)
def parse_raw(record: Mapping[str, Any]) -> Parsed:
    """A text in the target voice, trained as plain continuation (kept whole here)."""
    problems: list[str] = []
    text = _text(record, "text", problems, required=True)
    if not problems and not text.strip():
        problems.append("text is whitespace only")
    if problems:
        raise RecordProblems(problems)
    return text
