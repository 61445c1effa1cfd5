"""Read a Prometheus /metrics page (vLLM's or the gateway's) in tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from serving.engine.protocol import bearer


def metric_total(url: str, *names: str, api_key: str | None = None) -> float:
    """The sum of every sample at `url`/metrics whose name is one of `names` (all labels);
    `api_key` for a supervised vLLM server, which guards its /metrics too."""
    response = httpx.get(url + "/metrics", headers=bearer(api_key), timeout=30)
    response.raise_for_status()
    text = response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in names
    )
