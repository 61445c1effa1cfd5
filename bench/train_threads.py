"""Training step time by torch thread count, alone and beside a busy neighbour.

    .venv/bin/python -m bench.train_threads      # SmolLM2-135M-Instruct, about 5 minutes

A LoRA training step as `hybrid train` takes it (SmolLM2-135M-Instruct, LoRA r8/alpha 16 on
every linear projection, fp32, batch 2 x 448 tokens, AdamW), timed at 1 and 2 torch threads
(and the torch default, when it differs), first on the otherwise idle machine and then with a
neighbour process spinning on one core (what another job, a test run or vLLM's pinned core
does on a 2-core box). Writes bench/results/train_threads.{json,md} and the README block;
`TrainConfig.threads` takes its default from this.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import machine, markdown_table, write_results  # noqa: E402
from bench.embed_threads import busy_neighbour  # noqa: E402

STEPS = 6
"""Timed steps per setting, after one warm-up step."""


def model_and_batch():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.base_models import resolve_base_model

    folder = resolve_base_model("SmolLM2-135M-Instruct")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (2, 448), generator=generator)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    return model, ids, optimizer


def step_seconds(model, ids, optimizer, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    times = []
    for i in range(STEPS + 1):
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:  # the first step warms up at this thread count
            times.append(time.perf_counter() - start)
    return {
        "step_s_median": round(statistics.median(times), 2),
        "step_s_max": round(max(times), 2),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    import torch

    default = torch.get_num_threads()
    model, ids, optimizer = model_and_batch()
    rows = []
    for threads in sorted({1, 2, default}):
        alone = step_seconds(model, ids, optimizer, threads)
        neighbour = busy_neighbour()
        try:
            time.sleep(1)
            busy = step_seconds(model, ids, optimizer, threads)
        finally:
            neighbour.kill()
            neighbour.wait()
        rows.append(
            {
                "threads": threads,
                "torch_default": threads == default,
                "alone": alone,
                "busy_neighbour": busy,
            }
        )
        print(rows[-1], flush=True)
    table = markdown_table(
        ["torch threads", "step s alone (median / max)", "step s, one core busy (median / max)"],
        [
            [
                f"{r['threads']}" + (" (torch default)" if r["torch_default"] else ""),
                f"{r['alone']['step_s_median']} / {r['alone']['step_s_max']}",
                f"{r['busy_neighbour']['step_s_median']} / {r['busy_neighbour']['step_s_max']}",
            ]
            for r in rows
        ],
    )
    text = (
        "SmolLM2-135M-Instruct, LoRA r8 on all linear projections, fp32, batch 2 x 448 tokens, "
        f"{STEPS} timed steps each ({os.cpu_count()} CPUs)\n\n" + table
    )
    payload = {"machine": machine(), "steps": STEPS, "rows": rows}
    path = write_results("train_threads", payload, "# Training threads\n\n" + text, text)
    print(text)
    print(f"results in {path}")


if __name__ == "__main__":
    main()
