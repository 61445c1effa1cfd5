"""hybrid: composes retrieval/, finetune/ and serving/ into apps (knowledge base + adapter +
persona), with the `hybrid` CLI and the YAML config.

    from hybrid import App
    answer = App.from_yaml("examples/ceo-report-qa/app.yaml").chat("What was 2025 revenue?")
"""

from __future__ import annotations


def __getattr__(name: str):  # keeps `import hybrid` (and the CLI's start) light
    if name in ("App", "AppAnswer"):
        from hybrid.apps import app

        return getattr(app, name)
    raise AttributeError(f"module 'hybrid' has no attribute {name!r}")


__all__ = ["App", "AppAnswer"]
