"""The embedder sets torch's thread count deliberately (issue 14: with torch's default a query
embedding went from ~13 ms to ~490 ms while another process held a core)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from retrieval.config import EmbedderConfig

# A fresh process: torch's thread count is process-wide.
PROBE = """
import torch
from retrieval.config import EmbedderConfig
from retrieval.embedders import load_embedder, set_threads
torch.set_num_threads(3)
load_embedder(EmbedderConfig(threads=2))
after_load = torch.get_num_threads()
set_threads(0)
after_zero = torch.get_num_threads()
set_threads(EmbedderConfig().threads)
print(after_load, after_zero, torch.get_num_threads())
"""


def test_loading_the_embedder_sets_torch_threads_and_zero_keeps_them():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split() == ["2", "2", "1"]


def test_thread_count_is_checked():
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        EmbedderConfig(threads=-1)


SERVED = """
import asyncio, torch
from hybrid.server import SERVED_RETRIEVAL_THREADS, use_retrieval_threads
from retrieval.config import EmbedderConfig
from retrieval.embedders import load_embedder
model = load_embedder(EmbedderConfig(threads=2)).model  # a knowledge base recorded with 2
use_retrieval_threads(SERVED_RETRIEVAL_THREADS)  # what `hybrid serve` does beside its vLLM
def embed():  # as the gateway embeds a question: in an asyncio.to_thread worker
    return len(model.get_query_embedding("What is the refund window?")), torch.get_num_threads()
print(*asyncio.run(asyncio.to_thread(embed)), SERVED_RETRIEVAL_THREADS)
"""


def test_hybrid_serve_threads_reach_the_gateway_worker_that_embeds_questions():
    out = subprocess.run(
        [sys.executable, "-c", SERVED], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split() == ["384", "1", "1"]
