"""`TrainConfig.threads: auto`: torch threads chosen from the CPUs and how busy they are now."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest


def test_training_threads_follow_the_load(monkeypatch):
    import psutil

    from finetune import training
    from finetune.training import training_threads

    assert training_threads(3) == 3 and training_threads(0) == 0  # as set; 0: torch's default
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(psutil, "cpu_count", lambda: 2)
    for percent, threads in ((10.0, 2), (55.0, 1), (100.0, 1)):
        monkeypatch.setattr(psutil, "cpu_percent", lambda interval, p=percent: p)
        # idle: both cores; one core busy elsewhere: one thread; never fewer than one
        assert training_threads("auto") == threads, percent
    monkeypatch.setattr(training, "busy_cpus", lambda _s: 0.2)
    assert training_threads("auto") == 2


def test_busy_cpus_sees_a_neighbour_and_not_past_work():
    """A process spinning now counts as about one busy CPU; work this process did just before
    (what raised the 1-minute load average) does not."""
    from finetune.training import busy_cpus

    end = time.monotonic() + 1.5
    while time.monotonic() < end:  # our own past work: the load average would count it
        pass
    quiet = busy_cpus(0.5)
    if quiet > (os.cpu_count() or 1) - 1:
        pytest.skip(f"the machine is full already ({quiet:.1f} CPUs busy): no room to see one more")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = busy_cpus(1.0)
    finally:
        spin.kill()
        spin.wait()
    assert busy >= quiet + 0.6, (quiet, busy)
