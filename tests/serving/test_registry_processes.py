"""Several processes share one registry folder (gateway workers, the CLI beside a server):
concurrent writers lose no version and never hand out one version twice, and a reader that
never takes the lock always sees a whole index whose listed versions have complete files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from serving.adapters import AdapterRegistry
from serving.adapters.checks import check_adapter

pytestmark = pytest.mark.slow

ROUNDS = 6

WRITER = """
import json, sys
from pathlib import Path
from serving.adapters import AdapterRegistry, describe_base
root, base, lora, me, rounds = sys.argv[1:6]
registry = AdapterRegistry(Path(root), describe_base(Path(base)), 16)
import safetensors.torch  # imported before the start line, so the writers overlap
print("ready", flush=True)
sys.stdin.readline()  # start together
got, mine = [], None
for i in range(int(rounds)):
    # Shared name, versions numbered under the lock: the writers race for the same numbers.
    got.append(registry.register(Path(lora), "voice", promote=i % 2 == 0).version)
    # Own name: register, promote, remove the previous one (rmtree under the lock).
    new = registry.register(Path(lora), me, promote=True).version
    if mine is not None:
        registry.remove(me, mine)
    mine = new
print(json.dumps({"voice": got, "mine": mine}), flush=True)
"""

READER = """
import json, sys
from pathlib import Path
from serving.adapters import AdapterRegistry, AdapterNotFound, describe_base
root, base = sys.argv[1:3]
registry = AdapterRegistry(Path(root), describe_base(Path(base)), 16)
print("ready", flush=True)
reads = errors = 0
seen = False
while not Path(root, "done").exists():
    try:
        versions = [v for v in registry.list() if v.name == "voice"]
        for v in versions:  # voice versions are never removed: their files must be whole
            json.loads((v.path / "hybrid_adapter.json").read_text())
            assert (v.path / "adapter_model.safetensors").stat().st_size > 0
        if versions:
            seen = True
            registry.resolve("voice")
        reads += 1
    except AdapterNotFound:
        if seen:
            errors += 1
    except Exception as exc:
        errors += 1
        print("error", type(exc).__name__, exc, file=sys.stderr, flush=True)
print(json.dumps({"reads": reads, "errors": errors}), flush=True)
"""


def test_concurrent_writers_and_a_reader_in_other_processes(tmp_path, tiny_llama_dir, base, lora):
    root = tmp_path / "registry"
    AdapterRegistry(root, base, 16)  # created before the processes start

    def spawn(code: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(root), str(tiny_llama_dir), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    writers = [spawn(WRITER, str(lora), f"w{i}", str(ROUNDS)) for i in range(3)]
    reader = spawn(READER)
    try:
        for process in [*writers, reader]:
            assert process.stdout.readline().strip() == "ready"
        for writer in writers:
            writer.stdin.write("go\n")
            writer.stdin.flush()
        results = [json.loads(w.communicate(timeout=300)[0]) for w in writers]
        assert all(w.returncode == 0 for w in writers)
        (root / "done").touch()
        reads = json.loads(reader.communicate(timeout=60)[0])
    finally:
        for process in [*writers, reader]:
            process.kill()

    registry = AdapterRegistry(root, base, 16)
    handed_out = [v for r in results for v in r["voice"]]
    assert len(handed_out) == len(set(handed_out)) == 3 * ROUNDS, handed_out
    listed = {v.version for v in registry.list() if v.name == "voice"}
    assert listed == set(handed_out), f"lost: {set(handed_out) - listed}"
    for i, result in enumerate(results):
        own = [v for v in registry.list() if v.name == f"w{i}"]
        assert [(v.version, v.current) for v in own] == [(result["mine"], True)]
        assert sorted(p.name for p in (root / "store" / f"w{i}").iterdir()) == [result["mine"]]
    for version in registry.list():
        check_adapter(version.path, base, 16)
    assert reads["errors"] == 0 and reads["reads"] > 0, reads
