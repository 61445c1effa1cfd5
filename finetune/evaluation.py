"""`hybrid eval`: base vs adapter, side by side, on what the adapter should change and on what
it must not.

1. in-domain prompts seen in training, 2. in-domain prompts held out, 3. a general-ability guard
on unrelated text. For each: token-weighted loss and perplexity, base vs adapter. The voice
should improve on 1 and 2, while 3 may degrade by at most `guard_bound` (default 10%).
Optionally, generated answers are checked against user rules (regex, required/forbidden phrases,
JSON schema) as an adherence rate, base vs adapter.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from finetune.config import GENERAL_GUARD, EvalConfig, StyleRule
from finetune.data.schema import Example
from finetune.encoding import Collator, encode_examples
from finetune.errors import AdapterError, DatasetError
from finetune.manifest import read_manifest

__all__ = [
    "GENERAL_GUARD",
    "EvalConfig",
    "EvalReport",
    "StyleRule",
    "evaluate_adapter",
    "write_report",
]


@dataclass
class SetScore:
    name: str
    examples: int
    tokens: int
    base_loss: float
    adapter_loss: float

    @property
    def change(self) -> float:
        return (self.adapter_loss - self.base_loss) / self.base_loss if self.base_loss else 0.0

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "base_perplexity": round(math.exp(self.base_loss), 4),
            "adapter_perplexity": round(math.exp(self.adapter_loss), 4),
            "relative_change": round(self.change, 4),
        }


@dataclass
class Adherence:
    prompts: int
    base_rate: float
    adapter_rate: float
    per_rule: dict[str, dict[str, float]]
    samples: list[dict] = field(default_factory=list)


@dataclass
class EvalReport:
    adapter: str
    base_model: str
    sets: list[SetScore]
    adherence: Adherence | None
    guard_bound: float
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {
            "adapter": self.adapter,
            "base_model": self.base_model,
            "passed": self.passed,
            "failures": self.failures,
            "guard_bound": self.guard_bound,
            "sets": [s.to_dict() for s in self.sets],
            "adherence": asdict(self.adherence) if self.adherence else None,
        }

    def markdown(self) -> str:
        lines = [
            f"# Adapter evaluation: {Path(self.adapter).name}",
            "",
            f"Base model: `{self.base_model}`. Verdict: **{'PASS' if self.passed else 'FAIL'}**",
            "",
            "| set | examples | tokens | base loss | adapter loss | base ppl | adapter ppl | change |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in self.sets:
            d = s.to_dict()
            lines.append(
                f"| {s.name} | {s.examples} | {s.tokens} | {s.base_loss:.4f} | {s.adapter_loss:.4f}"
                f" | {d['base_perplexity']:.2f} | {d['adapter_perplexity']:.2f} | {s.change:+.1%} |"
            )
        lines += ["", f"Guard bound: the general set may rise by at most {self.guard_bound:.0%}."]
        if self.adherence:
            a = self.adherence
            lines += [
                "",
                "## Style/format adherence",
                "",
                f"{a.prompts} prompts: base {a.base_rate:.0%}, adapter {a.adapter_rate:.0%}",
                "",
                "| rule | base | adapter |",
                "|---|---|---|",
            ]
            lines += [
                f"| {r} | {v['base']:.0%} | {v['adapter']:.0%} |" for r, v in a.per_rule.items()
            ]
        if self.failures:
            lines += ["", "## Failed checks", ""] + [f"- {f}" for f in self.failures]
        lines += ["", "![losses](eval.png)", ""]
        return "\n".join(lines)


def _split_sets(
    config: EvalConfig, manifest: dict, adapter: Path
) -> tuple[list[Example], list[Example]]:
    from finetune.data import load_dataset

    paths = config.data or tuple(Path(p) for p in manifest.get("data", {}).get("paths", []))
    if not paths:
        raise DatasetError("no training data to evaluate on: pass data (the manifest names none)")
    examples = load_dataset(list(paths), format=config.data_format)
    split_file = adapter / "data_split.json"
    if not split_file.exists():
        raise AdapterError(f"{adapter} has no data_split.json; it was not trained by Hybrid")
    split = json.loads(split_file.read_text())
    by_origin = {e.origin: e for e in examples}
    seen = [by_origin[o] for o in split["train"] if o in by_origin]
    held = [by_origin[o] for o in split["validation"] if o in by_origin]
    return seen, held


def _loss(model, tokenizer, examples: list[Example], config: EvalConfig) -> tuple[float, int]:
    import torch

    encoded, _ = encode_examples(examples, tokenizer, config.max_length)
    collate = Collator(tokenizer.pad_token_id)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), config.batch_size):
            batch = collate(encoded[start : start + config.batch_size])
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
            shift_labels = batch["labels"][:, 1:].reshape(-1)
            losses = torch.nn.functional.cross_entropy(
                shift_logits, shift_labels, ignore_index=-100, reduction="sum"
            )
            total += float(losses)
            count += int((shift_labels != -100).sum())
    return (total / count if count else float("nan")), count


def _prompts(paths: tuple[Path, ...]) -> list[list[dict]]:
    """Conversations to answer: each ends with a user turn (trailing replies are dropped, so a
    training file works as a prompt set too)."""
    from finetune.data import load_dataset

    prompts = []
    for example in load_dataset(list(paths), format="auto", prompts=True):
        messages = list(example.messages)
        while messages[-1].role == "assistant":
            messages.pop()
        prompts.append([{"role": m.role, "content": m.content} for m in messages])
    return prompts


def _generate(model, tokenizer, prompt: list[dict], max_new_tokens: int) -> str:
    import torch

    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def evaluate_adapter(config: EvalConfig, *, progress: bool = True) -> EvalReport:
    """Run the blind side-by-side evaluation and write report.md, report.json and eval.png."""
    import torch
    from peft import PeftModel
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.base_models import resolve_base_model
    from finetune.data import load_dataset

    adapter = config.adapter.expanduser()
    manifest = read_manifest(adapter)
    # every data problem surfaces before a model is loaded
    seen, held = _split_sets(config, manifest, adapter)
    general = load_dataset(list(config.general), format="auto")
    prompts = _prompts(config.prompts)[: config.max_examples] if config.prompts else []

    base_name = config.base_model or manifest["base_model"]["path"]
    base_dir = resolve_base_model(base_name)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter)
    model.eval()

    sets = [("in-domain seen", seen), ("in-domain held-out", held), ("general guard", general)]
    scores = []
    for name, examples in tqdm(sets, desc="eval", unit="set", disable=not progress):
        examples = examples[: config.max_examples]
        if not examples:
            continue
        with model.disable_adapter():
            base_loss, tokens = _loss(model, tokenizer, examples, config)
        adapter_loss, _ = _loss(model, tokenizer, examples, config)
        scores.append(
            SetScore(name, len(examples), tokens, round(base_loss, 5), round(adapter_loss, 5))
        )

    adherence = None
    if prompts:
        per_rule = {r.label(): {"base": 0, "adapter": 0} for r in config.rules}
        passed = {"base": 0, "adapter": 0}
        samples = []
        for prompt in tqdm(prompts, desc="generate", unit="prompt", disable=not progress):
            with model.disable_adapter():
                base_answer = _generate(model, tokenizer, prompt, config.max_new_tokens)
            adapter_answer = _generate(model, tokenizer, prompt, config.max_new_tokens)
            for who, answer in (("base", base_answer), ("adapter", adapter_answer)):
                results = [rule.check(answer) for rule in config.rules]
                for rule, ok in zip(config.rules, results, strict=True):
                    per_rule[rule.label()][who] += ok
                passed[who] += all(results)
            if len(samples) < 5:
                samples.append(
                    {
                        "prompt": prompt[-1]["content"],
                        "base": base_answer,
                        "adapter": adapter_answer,
                    }
                )
        n = max(1, len(prompts))
        adherence = Adherence(
            prompts=len(prompts),
            base_rate=round(passed["base"] / n, 4),
            adapter_rate=round(passed["adapter"] / n, 4),
            per_rule={k: {w: round(v / n, 4) for w, v in d.items()} for k, d in per_rule.items()},
            samples=samples,
        )

    failures = verdict(scores, adherence, config.guard_bound, config.min_adherence)
    report = EvalReport(str(adapter), base_name, scores, adherence, config.guard_bound, failures)
    write_report(report, config.output_dir or adapter / "eval")
    return report


def verdict(
    scores: list[SetScore],
    adherence: Adherence | None,
    guard_bound: float,
    min_adherence: float | None,
) -> list[str]:
    """The failed checks, each as one line that says what to do about it."""
    failures = []
    for s in scores:
        if s.name.startswith("in-domain") and not s.adapter_loss < s.base_loss:
            failures.append(
                f"{s.name}: adapter loss {s.adapter_loss:.4f} is not below base {s.base_loss:.4f} "
                "(train longer or with a higher rate)"
            )
        if s.name == "general guard" and s.change > guard_bound:
            failures.append(
                f"general guard: loss rose {s.change:.1%}, above the {guard_bound:.0%} bound "
                "(train fewer steps, lower the rate, or add replay data)"
            )
    if adherence and min_adherence is not None and adherence.adapter_rate < min_adherence:
        failures.append(
            f"adherence: adapter passes {adherence.adapter_rate:.0%} of prompts, "
            f"below {min_adherence:.0%}"
        )
    return failures


def write_report(report: EvalReport, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    (out / "report.md").write_text(report.markdown())
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    names = [s.name for s in report.sets]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [s.base_loss for s in report.sets], 0.4, label="base")
    ax.bar([x + 0.2 for x in xs], [s.adapter_loss for s in report.sets], 0.4, label="adapter")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("loss (lower is better)")
    ax.set_title("Base vs adapter")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "eval.png")
    plt.close(fig)
    return out
