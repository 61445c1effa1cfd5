"""`TrainConfig.threads: auto`: torch threads chosen from the CPUs and their load."""

from __future__ import annotations


def test_training_threads_follow_the_load(monkeypatch):
    import os

    from finetune.training import training_threads

    assert training_threads(3) == 3 and training_threads(0) == 0  # as set; 0: torch's default
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.5, 0.5))
    assert training_threads("auto") == 2  # an idle 2-core machine: both cores
    monkeypatch.setattr(os, "getloadavg", lambda: (1.3, 1.0, 0.5))
    assert training_threads("auto") == 1  # one core busy elsewhere: one thread
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 4.0, 3.0))
    assert training_threads("auto") == 1  # never fewer than one
