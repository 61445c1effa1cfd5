"""Which replica serves an adapter: plain functions over plain data, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from serving.errors import NoHealthyEngine


@dataclass(frozen=True)
class ReplicaState:
    """What the engine set knows about one replica."""

    url: str
    healthy: bool
    adapters: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Choice:
    """The replica picked (by index into the states) and whether the adapter must be loaded."""

    index: int
    needs_load: bool


def choose_replica(states: Sequence[ReplicaState], adapter: str | None = None) -> Choice:
    """Pick the replica for a request to `adapter` (None: the base model).

    A healthy replica that already holds the adapter wins; otherwise the healthy replica with the
    fewest adapters, which then has to load it. Ties go to the replica listed first, so the
    choice is deterministic.

    Raises:
        NoHealthyEngine: no replica is healthy.
    """
    healthy = [i for i, state in enumerate(states) if state.healthy]
    if not healthy:
        urls = ", ".join(state.url for state in states) or "none configured"
        raise NoHealthyEngine(
            f"no healthy engine to serve '{adapter or 'the base model'}' (replicas: {urls}); "
            "check that the vLLM servers run and answer GET /health",
            url=urls,
        )

    def load(i: int) -> tuple[int, int]:
        return (len(states[i].adapters), i)

    if adapter is not None:
        holders = [i for i in healthy if adapter in states[i].adapters]
        if holders:
            return Choice(min(holders, key=load), needs_load=False)
        return Choice(min(healthy, key=load), needs_load=True)
    return Choice(min(healthy, key=load), needs_load=False)


def choose_merged(states: Sequence[ReplicaState], engine_name: str) -> int | None:
    """The merged engine (by index) for a request to `engine_name`: the first healthy one that
    serves it; None when there is none, and the request takes the LoRA path."""
    return next(
        (i for i, state in enumerate(states) if state.healthy and engine_name in state.adapters),
        None,
    )
