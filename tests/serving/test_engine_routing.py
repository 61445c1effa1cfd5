"""Which replica serves an adapter: pure function, no servers."""

from __future__ import annotations

import pytest

from serving.engine import Choice, ReplicaState, choose_replica
from serving.errors import NoHealthyEngine


def replica(url: str, *adapters: str, healthy: bool = True) -> ReplicaState:
    return ReplicaState(url, healthy, frozenset(adapters))


def test_a_healthy_holder_wins_even_when_busier():
    states = [replica("a"), replica("b", "x", "y", "z")]
    assert choose_replica(states, "x") == Choice(index=1, needs_load=False)


def test_an_unhealthy_holder_is_skipped_for_the_least_loaded_healthy_one():
    states = [replica("a", "x", healthy=False), replica("b", "p", "q"), replica("c", "p")]
    assert choose_replica(states, "x") == Choice(index=2, needs_load=True)


def test_among_several_holders_the_least_loaded_serves():
    states = [replica("a", "x", "p"), replica("b", "x")]
    assert choose_replica(states, "x") == Choice(index=1, needs_load=False)


def test_ties_go_to_the_first_listed():
    assert choose_replica([replica("a"), replica("b")], "x") == Choice(0, True)
    assert choose_replica([replica("a", "p"), replica("b", "q")], "x") == Choice(0, True)


def test_base_model_requests_go_to_the_least_loaded_healthy_replica():
    states = [replica("a", "p", "q"), replica("b", "p", healthy=False), replica("c", "p")]
    assert choose_replica(states) == Choice(index=2, needs_load=False)


def test_no_healthy_replica_names_them_all():
    with pytest.raises(NoHealthyEngine) as info:
        choose_replica([replica("http://a:1", healthy=False), replica("http://b:2", healthy=False)])
    assert "no healthy engine to serve 'the base model' (replicas: http://a:1, http://b:2)" in str(
        info.value
    )
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(NoHealthyEngine, match="replicas: none configured"):
        choose_replica([], "x")
