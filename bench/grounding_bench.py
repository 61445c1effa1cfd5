"""Grounding check quality: recall on planted errors and false flags on correct answers, the
claim-level check against the old digits-only check, per corpus (`report` tuned on, the brand
knowledge bases held out). Run: python -m bench.grounding_bench"""

from __future__ import annotations

import time

from bench.common import machine, markdown_table, write_results
from hybrid.apps.grounding_eval import KINDS, claims_check, corpora, digits_only, generate, measure


def main(seed: int = 0) -> None:
    results = {"machine": machine(), "seed": seed, "corpora": {}}
    rows = []
    for corpus in corpora():
        cases = generate(corpus, seed=seed)
        start = time.perf_counter()
        new = measure(cases, claims_check)
        per_answer_ms = (time.perf_counter() - start) * 1000 / len(cases)
        old = measure(cases, digits_only)
        results["corpora"][corpus.name] = {
            "held_out": corpus.held_out,
            "claims": {**new, "ms_per_answer": round(per_answer_ms, 2)},
            "digits_only": old,
        }
        split = "held out" if corpus.held_out else "tuned on"
        for name, m in (("digits only (before)", old), ("claims (now)", new)):
            kinds = ", ".join(
                f"{k} {m['per_kind'][k]['recall']:.2f}" for k in KINDS if k in m["per_kind"]
            )
            rows.append(
                [f"{corpus.name} ({split})", name, f"{m['planted']} / {m['correct']}",
                 f"{m['recall']:.3f}", f"{m['false_flags']:.3f}", kinds]
            )  # fmt: skip
    table = markdown_table(
        ["corpus", "check", "planted / correct", "recall", "false flags", "recall by error kind"],
        rows,
    )
    table += (
        "\n\nTarget: recall >= 0.90 with false flags <= 0.10 (hybrid/apps/grounding_eval.py "
        "generates the cases, seeded)."
    )
    write_results("grounding", results, table)
    print(table)


if __name__ == "__main__":
    main()
