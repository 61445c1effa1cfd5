"""vLLM general plugin, loaded in every process of a supervised vLLM server (the dist-info
beside this file puts its entry point on the server's PYTHONPATH): a request with a `seed`
must not kill the engine on a CPU.

vLLM 0.32's model runner rewinds the per-request random generator of every request whose
sampled token it discards (a prompt prefilled in chunks, because other prompts filled the
step's token budget): `gen.set_offset(gen.get_offset() - 4)`. A CPU `torch.Generator` has no
offset, so the call raises "CPU Generator does not use offset", the engine core dies and every
request in flight, of every tenant, fails. Eight concurrent seeded requests with long prompts
were enough (tests/serving/test_seeded_sampling_vllm.py).

The patch holds those generators aside while the runner does its bookkeeping, so the rewind
is skipped for them. The only cost: a seeded request that was prefilled in chunks draws from
its generator a few extra times, so its sample can differ from the same request served alone.
Only CPU generators are held aside; on other devices the runner is left as it is. Loaded by
vLLM's interpreter, which may be another environment than Hybrid's: imports vLLM, torch and
the standard library only, and does nothing when the runner no longer looks as expected.
"""

from __future__ import annotations

import functools
import logging

logger = logging.getLogger(__name__)


def register() -> None:
    try:
        from vllm.v1.worker import gpu_model_runner
    except Exception:  # another vLLM layout: nothing to patch
        return
    runner = getattr(gpu_model_runner, "GPUModelRunner", None)
    original = getattr(runner, "_bookkeeping_sync", None)
    if original is None or getattr(original, "_hybrid_cpu_seeded", False):
        return

    @functools.wraps(original)
    def _bookkeeping_sync(self, *args, **kwargs):
        held = _hold_cpu_generators_of_discarded(self)
        try:
            return original(self, *args, **kwargs)
        finally:
            self.input_batch.generators.update(held)

    _bookkeeping_sync._hybrid_cpu_seeded = True
    runner._bookkeeping_sync = _bookkeeping_sync


def _hold_cpu_generators_of_discarded(runner) -> dict:
    """Take out of the batch the CPU generators of the requests whose tokens this step
    discards (the ones the runner would rewind)."""
    batch = runner.input_batch
    generators = batch.generators
    if not generators:
        return {}
    mask = runner.discard_request_mask.np[: batch.num_reqs]
    held = {}
    for index in mask.nonzero()[0]:
        index = int(index)
        generator = generators.get(index)
        if generator is not None and generator.device.type == "cpu":
            held[index] = generators.pop(index)
    return held
