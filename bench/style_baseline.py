"""The base model's replies to an adapter's style prompts: the negatives of the voice model of
`hybrid eval app --style CONFIG --style-baseline FILE` (the style replies are the positives).

    .venv/bin/python -m bench.style_baseline examples/ceo-report-qa/train.yaml \\
        examples/ceo-report-qa/eval/base_replies.jsonl

Every chat example's prompt (its system and user turns, no retrieved passages) goes to the base
model (default: the prepared SmolLM2-135M-Instruct) with transformers in this process, greedy,
repetition penalty 1.1, at most 160 new tokens: what the model says in that role without the
adapter. Writes one JSON object a line: {"prompt": [...], "reply": "...", "model": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("style", type=Path, help="training config (its data) or chat JSONL")
    parser.add_argument("out", type=Path, help="JSONL file to write")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="folder or default name")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--limit", type=int, help="only the first N prompts (CPU time)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.base_models import resolve_base_model
    from hybrid.evaluation.voice import read_style_examples, style_files

    torch.set_num_threads(args.threads)
    folder = Path(args.model) if Path(args.model).is_dir() else resolve_base_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    examples = read_style_examples(style_files(args.style))[: args.limit]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("", encoding="utf-8")
    rows = []
    for start in range(0, len(examples), args.batch):
        batch = examples[start : start + args.batch]
        prompts = [
            tokenizer.apply_chat_template(
                [dict(m) for m in ex.prompt], add_generation_prompt=True, tokenize=False
            )
            for ex in batch
        ]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                repetition_penalty=1.1,
                pad_token_id=tokenizer.pad_token_id,
            )
        with args.out.open("a", encoding="utf-8") as f:  # batch by batch: a long run keeps
            for ex, ids in zip(batch, out[:, inputs["input_ids"].shape[1] :], strict=True):
                reply = tokenizer.decode(ids, skip_special_tokens=True).strip()
                row = {"prompt": [dict(m) for m in ex.prompt], "reply": reply}
                rows.append(row)
                f.write(json.dumps({**row, "model": folder.name}, ensure_ascii=False) + "\n")
        print(f"{len(rows)}/{len(examples)}", flush=True)
    print(f"wrote {len(rows)} base replies to {args.out}")


if __name__ == "__main__":
    main()
