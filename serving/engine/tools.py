"""Which vLLM tool-call parser fits a model: read from its chat template, so that requests
carrying `tools` work on the supervised engine without a flag to look up.

vLLM refuses every request with `tools` (400 "requires --tool-call-parser") unless the server
runs with `--enable-auto-tool-choice --tool-call-parser NAME`, and NAME must match how the
model writes its calls. The markers below are the ones those parsers look for.
"""

from __future__ import annotations

import json
from pathlib import Path

TEMPLATE_MARKERS: tuple[tuple[str, str], ...] = (
    ("<tool_call>", "hermes"),  # Hermes 2 Pro, Qwen 2.5/3, SmolLM3
    ("[TOOL_CALLS]", "mistral"),
    ("<|python_tag|>", "llama3_json"),
    ("<|im_start|>", "hermes"),  # ChatML without tool markup (SmolLM2): Hermes' own layout
)
"""(text in the chat template, parser), first match wins."""


def chat_template(model_dir: str | Path) -> str | None:
    """The chat template of a model folder (chat_template.jinja or tokenizer_config.json), or
    None when the folder has none (or is not a folder)."""
    folder = Path(model_dir).expanduser()
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8", errors="replace")
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
        template = "\n".join(str(t.get("template", "")) for t in template if isinstance(t, dict))
    return template if isinstance(template, str) else None


def parser_for_template(template: str | None) -> str | None:
    """The tool-call parser for a chat template, or None when no known layout matches."""
    if not template:
        return None
    return next((parser for marker, parser in TEMPLATE_MARKERS if marker in template), None)
