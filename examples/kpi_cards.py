"""The KPI-card measurement: held-out questions through a running gateway, each app with and
without the engine's structured output, scored against gold cards.

For each app and each mode every question of `eval/questions.jsonl` is asked once, greedy:
`app`: the request as a client writes it, so the app's own settings apply (the example's apps
set `generation.enforce_answer_schema`: vLLM decodes under the card's schema); `text`: the same
with `response_format={"type": "text"}`, the client's way to get the model's free answer (the
trained format alone); `json_schema`: with `response_format={"type": "json_schema", ...}`
carrying the card's schema, the client's own constraint.

- schema-valid: the app's own verdict (`hybrid.answer_schema.valid`, the check every answer of
  an app with `answer_schema` gets);
- value / unit / period / source_page: the answer parses as a JSON object and the field equals
  the gold card's (`value` as a number: 41.3 = 41.30, "41.3" is not a number);
- all three: value, unit and period all right;
- latency: wall time per request as the client sees it (with `concurrency` questions in flight,
  so it includes queueing), and completion tokens.

Used by examples/report-kpi-cards/run.py (its last step) and bench/kpi_cards_bench.py.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FIELDS = ("value", "unit", "period", "source_page")
MODES = ("app", "text", "json_schema")
MODE_LABELS = {
    "app": "the app's answer_schema",
    "text": "none (response_format text)",
    "json_schema": "client's json_schema",
}


def read_questions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def response_format(schema: dict) -> dict:
    return {
        "type": "json_schema",
        "json_schema": {"name": "kpi_card", "schema": schema, "strict": True},
    }


def field_right(card: object, gold: dict, name: str) -> bool:
    if not isinstance(card, dict) or name not in card:
        return False
    got, want = card[name], gold[name]
    if name in ("value", "source_page"):
        if isinstance(got, bool) or not isinstance(got, int | float):
            return False
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
    return got == want


def parse_card(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def ask_one(client, app: str, question: dict, mode: str, schema: dict, max_tokens: int) -> dict:
    extra = {
        "app": {},
        "text": {"response_format": {"type": "text"}},
        "json_schema": {"response_format": response_format(schema)},
    }[mode]
    started = time.perf_counter()
    reply = client.chat.completions.create(
        model=app,
        messages=[{"role": "user", "content": question["question"]}],
        temperature=0,
        max_tokens=max_tokens,
        **extra,
    )
    seconds = time.perf_counter() - started
    text = reply.choices[0].message.content or ""
    notes = (reply.model_extra or {}).get("hybrid") or {}
    check = notes.get("answer_schema")
    card = parse_card(text)
    return {
        "question": question["question"],
        "answer": text,
        "finish_reason": reply.choices[0].finish_reason,
        "answer_schema": check,
        "valid": bool(check and check["valid"]),
        "right": {name: field_right(card, question["card"], name) for name in FIELDS},
        "seconds": round(seconds, 3),
        "completion_tokens": reply.usage.completion_tokens if reply.usage else None,
    }


def score(rows: list[dict]) -> dict:
    n = len(rows)
    rate = {name: sum(r["right"][name] for r in rows) / n for name in FIELDS}
    all_three = sum(all(r["right"][k] for k in ("value", "unit", "period")) for r in rows) / n
    seconds = [r["seconds"] for r in rows]
    tokens = [r["completion_tokens"] for r in rows if r["completion_tokens"] is not None]
    return {
        "questions": n,
        "schema_valid": sum(r["valid"] for r in rows) / n,
        **{f"{name}_right": value for name, value in rate.items()},
        "value_unit_period_right": all_three,
        "latency_mean_s": round(statistics.fmean(seconds), 2),
        "latency_p50_s": round(statistics.median(seconds), 2),
        "completion_tokens_mean": round(statistics.fmean(tokens), 1) if tokens else None,
        "cut_by_max_tokens": sum(r["finish_reason"] == "length" for r in rows),
    }


def measure(
    url: str,
    apps: tuple[str, ...],
    questions: Path,
    schema: dict,
    *,
    max_tokens: int = 200,
    concurrency: int = 4,
) -> dict:
    """Every app x mode over the held-out questions; {"cells": [...], "answers": {...}}."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=900)
    cases = read_questions(questions)
    cells, answers = [], {}
    for app in apps:
        for mode in MODES:
            with ThreadPoolExecutor(concurrency) as pool:
                asked = [
                    pool.submit(ask_one, client, app, q, mode, schema, max_tokens) for q in cases
                ]
                rows = [future.result() for future in asked]
            cells.append({"app": app, "mode": mode, **score(rows)})
            answers[f"{app}/{mode}"] = rows
            print(table_row(cells[-1]), flush=True)
    return {"cells": cells, "answers": answers}


HEADER = (
    "| app | engine structured output | schema-valid | value | unit | period | all three "
    "| source page | latency mean / p50 (s) | completion tokens | cut by max_tokens |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(cell: dict) -> str:
    n = cell["questions"]

    def frac(key: str) -> str:
        return f"{cell[key]:.2f} ({round(cell[key] * n)}/{n})"

    mode = MODE_LABELS.get(cell["mode"], cell["mode"])
    return (
        f"| {cell['app']} | {mode} | {frac('schema_valid')} | {frac('value_right')} "
        f"| {frac('unit_right')} | {frac('period_right')} | {frac('value_unit_period_right')} "
        f"| {frac('source_page_right')} | {cell['latency_mean_s']} / {cell['latency_p50_s']} "
        f"| {cell['completion_tokens_mean']} | {cell['cut_by_max_tokens']} |"
    )


def table(cells: list[dict]) -> str:
    return "\n".join([HEADER, *(table_row(c) for c in cells)])
