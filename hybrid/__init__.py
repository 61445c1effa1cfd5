"""hybrid: composes retrieval/, finetune/ and serving/ into apps (knowledge base + adapter +
persona), with the `hybrid` CLI and the YAML config.

    import hybrid

    answer = hybrid.App.from_yaml("examples/ceo-report-qa/app.yaml").chat("What was 2025 revenue?")
    hybrid.train(Path("examples/ceo-report-qa/train.yaml"))          # `hybrid train`
    hybrid.serve(hybrid.load_config(Path("hybrid.yaml")))             # `hybrid serve`
"""

from __future__ import annotations

from importlib import import_module

# Loaded on first use, so `import hybrid` (and the CLI's start) stays light.
_LAZY = {
    "App": "hybrid.apps.app",
    "AppAnswer": "hybrid.apps.app",
    "load_config": "hybrid.config",
    "serve": "hybrid.server",
    "train": "hybrid.training",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hybrid' has no attribute {name!r}")


__all__ = sorted(_LAZY)
