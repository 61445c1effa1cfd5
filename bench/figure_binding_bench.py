"""Figure binding benchmark: what `generation.bind_figures` does to answer correctness and to
decoding speed, on the ceo-report-qa labelled questions, with the base app (no adapter).

    .venv/bin/python -m bench.figure_binding_bench            # SmolLM2-135M-Instruct (~12 min)
    .venv/bin/python -m bench.figure_binding_bench --quick    # 8 questions, fewer tokens

Setup: the `northwind-base` app of examples/ceo-report-qa (its YAML, its retrieval settings) over a
knowledge base built from the example's report PDF in a temporary folder, one vLLM server
(`serving.engine.EngineProcess`, bf16 as prepared by `hybrid model prepare`, 1 GiB KV cache) and
the app's own request flow (`AppPipeline.passages` and `engine_body`, what the gateway and
`App.chat` run), sent straight to vLLM. Each question is asked twice, bound and free, identical
but for the binding; greedy decoding (temperature 0) so that the two differ only by the grammar.

What is measured:
1. correctness: an answerable question is right when one of its gold answers is in the answer:
   every number of the gold answer among the answer's numbers (compared as values, "1,864" =
   "1864"), and its words (for answers without numbers: "Germany") as a case-insensitive
   substring. Units are not checked (the claim-level grounding check does that). Unanswerable
   questions are right when the app abstains (no passages: its no-context answer). Also counted:
   answers with a number found in no passage nor the user's messages ("unbound figures"), apart
   from a figure cut off half-written by `max_tokens` at the very end ("1,86" of "1,864").
2. speed: tokens/s of single sequential requests, bound vs free on the same questions, each
   generating exactly `--tokens` tokens (`min_tokens` = `max_tokens`), alternating bound/free
   (ABBA) so that the shared machine's drifting load hits both; and the grammar's compile time
   with the model's tokenizer for 5, 50, 200 and 1000 figures (xgrammar, as vLLM compiles it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, markdown_table, write_results  # noqa: E402

EXAMPLE = ROOT / "examples" / "ceo-report-qa"
APP_FILE = EXAMPLE / "apps" / "northwind-base.yaml"
QUESTIONS = EXAMPLE / "eval" / "questions.jsonl"


# ---- scoring --------------------------------------------------------------------------------


def _values(text: str) -> list[float]:
    from hybrid.apps.figure_binding import figures_in

    values = []
    for figure in figures_in([text]):
        # "1,864" is one thousand eight hundred; "1,5" (a decimal comma) is rare in English text.
        try:
            values.append(float(figure.replace(",", "")))
        except ValueError:
            continue
    return values


def is_correct(answer: str, gold: list[str]) -> bool:
    """One of the gold forms is in the answer (numbers by value, other words as text)."""
    import re

    found = _values(answer)
    for form in gold:
        numbers = _values(form)
        if numbers:
            if all(any(abs(n - f) < 1e-9 for f in found) for n in numbers):
                return True
        elif re.sub(r"\s+", " ", form.lower()) in re.sub(r"\s+", " ", answer.lower()):
            return True
    return False


def load_questions(path: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    answerable = [r for r in rows if r.get("answers")]
    unanswerable = [r for r in rows if not r.get("answers")]
    if limit:
        answerable = answerable[: max(1, limit - 2)]
        unanswerable = unanswerable[:2]
    return answerable + unanswerable


def conversation(row: dict) -> list[dict]:
    return [*row.get("messages", []), {"role": "user", "content": row["question"]}]


# ---- grammar compile time ---------------------------------------------------------------------


def compile_times(model: Path) -> list[dict]:
    """Compile time of figure grammars: with a fresh compiler (nothing cached), and with a warm
    one that has compiled other figure grammars before (vLLM keeps one compiler per engine)."""
    import random

    import xgrammar
    from transformers import AutoTokenizer

    from hybrid.apps.figure_binding import figure_grammar

    info = xgrammar.TokenizerInfo.from_huggingface(AutoTokenizer.from_pretrained(model))
    rng = random.Random(0)

    def grammar(count: int) -> str:
        figures = set()
        while len(figures) < count:
            n = rng.randint(1, 2_000_000)
            figures.add(f"{n:,}" if rng.random() < 0.5 else f"{n / 100:.1f}")
        return figure_grammar(sorted(figures), citations=4)

    warm = xgrammar.GrammarCompiler(info, max_threads=1)
    warm.compile_grammar(grammar(20))
    rows = []
    for count in (5, 50, 200, 1000):
        fresh = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        row = {"figures": count}
        for name, compiler in (("fresh_ms", fresh), ("warm_ms", warm)):
            text = grammar(count)  # a new figure set each time: nothing to find in a cache
            started = time.perf_counter()
            compiler.compile_grammar(text)
            row[name] = round((time.perf_counter() - started) * 1000, 1)
        rows.append(row)
    return rows


# ---- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 questions, 32-token speed runs")
    parser.add_argument("--model", type=Path, help="model folder; default: prepared SmolLM2")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per speed request")
    parser.add_argument("--speed-questions", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=100, help="answer length cap")
    parser.add_argument("--concurrency", type=int, default=4, help="correctness requests")
    args = parser.parse_args()

    import httpx
    import torch

    torch.set_num_threads(1)
    from finetune.base_models import prepare_default_model
    from hybrid.apps.app import open_pipeline
    from hybrid.apps.budget import PromptBudget
    from hybrid.apps.figure_binding import figures_in, unbound_figures
    from hybrid.apps.spec import load_app_spec
    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog
    from serving.engine import EngineConfig, EngineProcess
    from serving.engine.protocol import bearer

    model = args.model or prepare_default_model()
    tokens = 32 if args.quick else args.tokens
    rows = load_questions(QUESTIONS, 8 if args.quick else None)
    spec = load_app_spec(APP_FILE)
    specs = {
        bind: spec.model_copy(
            update={"generation": spec.generation.model_copy(update={"bind_figures": bind})}
        )
        for bind in (True, False)
    }
    max_len = 2048
    with tempfile.TemporaryDirectory(prefix="figure-bench-") as tmp:
        catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=Path(tmp) / "chroma"))
        started = time.perf_counter()
        catalog.create(spec.knowledge_base).ingest([EXAMPLE / "docs"])
        ingest_s = time.perf_counter() - started
        budget = PromptBudget(model, max_len)
        pipelines = {bind: open_pipeline(s, catalog, budget) for bind, s in specs.items()}
        compiles = compile_times(model)
        engine = EngineProcess(
            EngineConfig(
                model=str(model),
                served_model_name="base",
                max_model_len=max_len,
                max_lora_rank=8,
                kv_cache_gib=1,
                log_file=Path(tmp) / "vllm.log",
                startup_timeout_s=900,
            )
        ).start()
        try:
            http = httpx.Client(
                base_url=engine.openai_base_url,
                headers=bearer(engine.api_key),
                timeout=600,
            )

            def ask(bind: bool, messages: list[dict], sampling: dict) -> dict:
                pipeline = pipelines[bind]
                question = messages[-1]["content"]
                body = {"messages": messages, **sampling}
                passages = pipeline.passages(question, body)
                if pipeline.answers_without_generation(passages):
                    return {"text": pipeline.spec.no_context.message, "abstained": True}
                engine_body = {**pipeline.engine_body(body, passages), "model": "base"}
                assert ("structured_outputs" in engine_body) == bind
                started = time.perf_counter()
                response = http.post("/chat/completions", json=engine_body)
                response.raise_for_status()
                elapsed = time.perf_counter() - started
                answer = response.json()
                text = answer["choices"][0]["message"]["content"] or ""
                asked = [m["content"] for m in messages if m["role"] == "user"]
                allowed = figures_in([p.text for p in passages] + asked)
                unbound = unbound_figures(text, allowed)
                finish = answer["choices"][0]["finish_reason"]
                # A figure the grammar was still writing when max_tokens cut the answer off.
                cut = [
                    f
                    for f in unbound[-1:]
                    if finish == "length"
                    and text.rstrip().endswith(f)
                    and any(a.startswith(f) for a in allowed)
                ]
                return {
                    "text": text,
                    "abstained": False,
                    "seconds": elapsed,
                    "completion_tokens": answer["usage"]["completion_tokens"],
                    "finish_reason": finish,
                    "unbound": [f for f in unbound if f not in cut] if cut else unbound,
                    "cut_figure": cut[0] if cut else None,
                }

            # 1. correctness: a few requests in flight (greedy answers do not depend on it)
            def answer(row: dict) -> dict:
                sampling = {"temperature": 0, "max_tokens": args.max_tokens}
                entry = {"question": row["question"], "gold": row.get("answers")}
                for bind in (True, False):
                    got = ask(bind, conversation(row), sampling)
                    got["correct"] = (
                        is_correct(got["text"], row["answers"])
                        if row.get("answers")
                        else got["abstained"]
                    )
                    entry["bound" if bind else "free"] = got
                print(
                    f"{row['question'][:60]!r}: bound={entry['bound']['correct']} "
                    f"free={entry['free']['correct']}",
                    flush=True,
                )
                return entry

            with ThreadPoolExecutor(args.concurrency) as pool:
                answers = list(pool.map(answer, rows))

            # 2. speed (ABBA over the first answerable questions)
            speed = {True: [], False: []}
            answerable = [r for r in rows if r.get("answers")][: args.speed_questions]
            sampling = {"temperature": 0, "max_tokens": tokens, "min_tokens": tokens}
            for i, row in enumerate(answerable):
                for bind in (True, False) if i % 2 == 0 else (False, True):
                    got = ask(bind, conversation(row), sampling)
                    speed[bind].append(got["completion_tokens"] / got["seconds"])
        finally:
            engine.stop()

    def summary(side: str) -> dict:
        answerable = [a for a in answers if a["gold"]]
        unanswerable = [a for a in answers if not a["gold"]]
        generated = [a[side] for a in answers if not a[side]["abstained"]]
        return {
            "correct": sum(a[side]["correct"] for a in answerable),
            "answerable": len(answerable),
            "abstained_right": sum(a[side]["correct"] for a in unanswerable),
            "unanswerable": len(unanswerable),
            "answers_with_unbound_figures": sum(bool(g["unbound"]) for g in generated),
            "answers_ending_in_a_figure_cut_by_max_tokens": sum(
                bool(g["cut_figure"]) for g in generated
            ),
            "generated": len(generated),
        }

    results = {"bound": summary("bound"), "free": summary("free")}
    tok_s = {k: [round(v, 2) for v in speed[b]] for k, b in (("bound", True), ("free", False))}
    payload = {
        "machine": machine(),
        "model": str(model),
        "app": str(APP_FILE.relative_to(ROOT)),
        "questions": str(QUESTIONS.relative_to(ROOT)),
        "ingest_s": round(ingest_s, 1),
        "correctness": results,
        "answers_changed_by_binding": sum(a["bound"]["text"] != a["free"]["text"] for a in answers),
        "speed_tokens_per_s": tok_s,
        "speed_tokens_per_request": tokens,
        "grammar_compile": compiles,
        "answers": answers,
    }
    rows_md = []
    for side in ("bound", "free"):
        r = results[side]
        med = statistics.median(tok_s[side]) if tok_s[side] else float("nan")
        rows_md.append(
            [
                "northwind-base" + (" + bind_figures" if side == "bound" else ""),
                f"{r['correct']}/{r['answerable']}",
                f"{r['abstained_right']}/{r['unanswerable']}",
                f"{r['answers_with_unbound_figures']}/{r['generated']}"
                f" (+{r['answers_ending_in_a_figure_cut_by_max_tokens']} cut off)",
                f"{med:.1f} ({min(tok_s[side]):.1f}-{max(tok_s[side]):.1f})",
            ]
        )
    table = markdown_table(
        [
            "app",
            "right answers",
            "right abstentions",
            "answers with a figure in no source (+ ending in a figure cut by max_tokens)",
            f"tokens/s, median (range), {tokens}-token requests",
        ],
        rows_md,
    )
    table += (
        "\n\nGrammar compile time with the model's tokenizer (xgrammar, one thread), fresh "
        "compiler / warm compiler (as in vLLM): "
        + ", ".join(f"{c['figures']} figures {c['fresh_ms']} / {c['warm_ms']} ms" for c in compiles)
    )
    write_results("figure_binding", payload, table)
    print(table)


if __name__ == "__main__":
    main()
