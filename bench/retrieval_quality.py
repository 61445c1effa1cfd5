"""Retrieval quality: the labelled questions of the examples, hit@k and MRR, vector vs hybrid.

    .venv/bin/python -m bench.retrieval_quality

Writes bench/results/retrieval_quality.{json,md}. The same check runs in the slow test tier
(tests/retrieval/test_labelled_examples.py) with floors on hit@5 and MRR.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.common import machine, write_results
from examples.retrieval_check import run_check, table
from retrieval import EmbeddedStoreConfig, KnowledgeBaseCatalog


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="hybrid-quality-"))
    try:
        results = run_check(KnowledgeBaseCatalog(EmbeddedStoreConfig(path=root)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = table(results)
    payload = {"machine": machine(), "results": {k: v.to_dict() for k, v in results.items()}}
    path = write_results("retrieval_quality", payload, text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
