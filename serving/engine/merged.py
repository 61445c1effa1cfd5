"""Merged engines: a vLLM server whose base model is one adapter version merged into the base
(`hybrid adapter merge`), the fast path for an adapter that takes most of the traffic.

A merged engine proves what it serves by its served model names (the only thing every vLLM
server tells over HTTP): it is started with `--served-model-name NAME@VERSION
NAME@VERSION+sha256:DIGEST`. The first name is the one vLLM puts in its answers, so they read
exactly like the LoRA path's; the second carries the digest of the adapter files it was merged
from (`adapter_digest`, recorded by the merge), which the gateway compares with the registered
version's. Plain functions, no I/O: `EngineSet` (replicas.py) asks the server and routes.
"""

from __future__ import annotations

from collections.abc import Sequence

from serving.engine.protocol import ModelCard

DIGEST_MARK = "+sha256:"
DIGEST_CHARS = 16
"""Hex digits of the digest in the served name: 64 bits tell merges of different weights apart."""


def digest_name(engine_name: str, digest: str) -> str:
    """The served name that says which weights a merged engine serves `engine_name` from."""
    return f"{engine_name}{DIGEST_MARK}{digest[:DIGEST_CHARS]}"


def served_names(engine_name: str, digest: str) -> list[str]:
    """`--served-model-name` of a merged engine: answers named `engine_name`, digest listed."""
    return [engine_name, digest_name(engine_name, digest)]


def merged_problem(
    cards: Sequence[ModelCard], engine_name: str, digest: str, url: str
) -> str | None:
    """Why the server at `url` (its `/v1/models` cards) is not a merged engine serving the
    registered `engine_name` whose adapter files have `digest`; None when it is."""
    bases = [card.id for card in cards if not card.is_adapter]
    expected = digest_name(engine_name, digest)
    start = f"start it with --served-model-name {' '.join(served_names(engine_name, digest))}"
    if not bases or bases[0] != engine_name:
        return (
            f"merged engine {url} serves {', '.join(bases) or 'no model'} as its base model, not "
            f"'{engine_name}' (its first served name); {start}"
        )
    if expected in bases:
        return None
    other = next((b for b in bases if b.startswith(engine_name + DIGEST_MARK)), None)
    if other is not None:
        return (
            f"merged engine {url} was merged from other weights than the registered "
            f"'{engine_name}' (it serves '{other}', the registry's files give '{expected}'); "
            f"merge the registered version again: hybrid adapter merge {engine_name} --out DIR"
        )
    return (
        f"merged engine {url} does not say which weights it was merged from; {start} "
        "(as `hybrid adapter merge` printed)"
    )
