"""Read a Prometheus /metrics page (vLLM's or the gateway's) in tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def metric_total(url: str, *names: str) -> float:
    """The sum of every sample at `url`/metrics whose name is one of `names` (all labels)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in names
    )
