"""Registry writes are atomic: a writer killed with SIGKILL at random moments (repeatedly)
never leaves a registry that is unreadable, lists a version whose files are incomplete, or
loses a version that was registered before the kill."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.checks import check_adapter
from tests.helpers.adapters import random_lora
from tests.helpers.reliability import record

pytestmark = pytest.mark.slow

WRITER = """
import sys
from pathlib import Path
from serving.adapters import AdapterRegistry, describe_base
registry = AdapterRegistry(Path(sys.argv[1]), describe_base(Path(sys.argv[2])), 16)
import safetensors.torch  # the adapter checks read weights with torch: loaded before the kills
print("ready", flush=True)
i = 0
while True:
    added = registry.register(Path(sys.argv[3]), "voice", promote=i % 2 == 0)
    registry.promote("voice", added.version)
    i += 1
"""


@pytest.mark.reliability
def test_kill_9_at_random_points_leaves_a_good_registry(tmp_path, tiny_llama_dir):
    base = describe_base(tiny_llama_dir)
    lora = random_lora(tiny_llama_dir, tmp_path / "lora")
    root = tmp_path / "registry"
    rng = random.Random(7)
    seen: set[str] = set()
    for round_ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(tiny_llama_dir), str(lora)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        writer.send_signal(signal.SIGKILL)
        writer.wait()

        registry = AdapterRegistry(root, base, 16)
        versions = registry.list()  # index.json parses
        names = {v.version for v in versions}
        assert seen <= names, f"round {round_}: versions {seen - names} were lost"
        seen = names
        for version in versions:
            check_adapter(version.path, base, 16)  # every listed copy is complete and valid
        current = [v for v in versions if v.current]
        assert len(current) <= 1
        index = json.loads((root / "index.json").read_text()) if versions else None
        assert index is None or index["adapters"]["voice"]["current"] in names
    assert len(seen) >= 3, "the writer never got far enough to test anything"
    registry.register(lora, "other")  # the next writer removes the orphans of killed ones
    assert not list(root.glob(".staging-*")) and not list(root.glob(".index-*.json"))
    record(
        "Faults",
        "Adapter registry: writer killed (kill -9) at random points, 8 rounds",
        kills=8,
        versions_checked=len(seen),
        lost=0,
        orphans_left=0,
    )
