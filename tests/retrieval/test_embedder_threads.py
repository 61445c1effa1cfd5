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
