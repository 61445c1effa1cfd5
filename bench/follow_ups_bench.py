"""Follow-up questions: retrieval hits on the examples' multi-turn labelled cases with the
follow-up rule and without it (the last user message alone), and how often a question that
stands alone would be taken for a follow-up. Real MiniLM embedder, embedded Chroma, the apps'
own retrieval settings. Run: python -m bench.follow_ups_bench"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.common import machine, markdown_table, write_results
from hybrid.apps.followups import is_follow_up
from hybrid.apps.pipeline import AppPipeline
from hybrid.apps.spec import load_app_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# labelled set -> (app file per case, documents of its knowledge base)
SETS = {
    "ceo-report-qa": lambda case: ("northwind-base", EXAMPLES / "ceo-report-qa" / "docs"),
    "branded-chatbot": lambda case: (
        case["brand"],
        EXAMPLES / "branded-chatbot" / "brands" / case["brand"] / "kb",
    ),
}


def app_file(example: str, name: str) -> Path:
    return EXAMPLES / example / "apps" / f"{name}.yaml"


def hit(passages, case) -> bool:
    return any(
        p.file_name == case["source"] and (case.get("page") is None or p.page == case["page"])
        for p in passages
    )


def main() -> None:
    from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog

    rows, results = [], {"machine": machine(), "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        catalog = KnowledgeBaseCatalog(EmbeddedStoreConfig(path=Path(tmp)))
        bases = {}
        for example, where in SETS.items():
            lines = (EXAMPLES / example / "eval" / "questions.jsonl").read_text().splitlines()
            cases = [json.loads(line) for line in lines if line.strip()]
            single = [c for c in cases if not c.get("messages")]
            multi = [c for c in cases if c.get("messages") and c.get("source")]
            triggered = [c["question"] for c in single if is_follow_up(c["question"])]
            counts = {"rule": 0, "off": 0}
            for case in multi:
                app, docs = where(case)
                if docs not in bases:
                    kb = catalog.create(f"kb-{len(bases)}")
                    kb.ingest([docs], progress=False)
                    bases[docs] = kb
                spec = load_app_spec(app_file(example, app))
                messages = [*case["messages"], {"role": "user", "content": case["question"]}]
                for mode in counts:
                    retrieval = spec.retrieval.model_copy(update={"follow_ups": mode})
                    pipeline = AppPipeline(spec.model_copy(update={"retrieval": retrieval}),
                                           bases[docs])  # fmt: skip
                    found = pipeline.retrieve(pipeline.search_query(case["question"], messages))
                    counts[mode] += hit(found, case)
            results["sets"][example] = {
                "multi_turn": len(multi),
                "hits_with_rule": counts["rule"],
                "hits_last_message_only": counts["off"],
                "single_turn": len(single),
                "single_taken_for_follow_ups": triggered,
            }
            rows.append([example, len(multi), counts["off"], counts["rule"],
                         f"{len(triggered)} / {len(single)}"])  # fmt: skip
    table = markdown_table(
        ["labelled set", "follow-ups", "source found: last message only",
         "source found: follow-up rule", "standalone questions taken for follow-ups"],
        rows,
    )  # fmt: skip
    write_results("follow_ups", results, table)
    print(table)
    print(json.dumps(results["sets"], indent=1))


if __name__ == "__main__":
    main()
