"""Admission: how many generation requests the gateway holds at once. Past the limit a request
is refused at once with 429 and Retry-After, before it costs the engine anything."""

from __future__ import annotations

from serving.gateway.errors import TooManyRequests
from serving.gateway.metrics import GatewayMetrics

RETRY_AFTER_BUSY_S = 1


class Admission:
    def __init__(self, metrics: GatewayMetrics, max_pending: int | None = None):
        self.metrics = metrics
        self.max_pending = max_pending
        """Generation requests the gateway holds at once; past it, 429 with Retry-After."""
        self.active = 0

    def admit(self, requested: str) -> Ticket:
        """Count a request for model `requested` in; `Ticket.leave()` when its answer is sent.

        Raises:
            TooManyRequests: the gateway holds `max_pending` requests already.
        """
        if self.max_pending is not None and self.active >= self.max_pending:
            self.metrics.requests.labels("admission", requested, "429").inc()
            raise TooManyRequests(
                f"the gateway is at its limit of {self.max_pending} requests in progress; "
                f"retry in {RETRY_AFTER_BUSY_S} s",
                headers={"Retry-After": str(RETRY_AFTER_BUSY_S)},
            )
        self.active += 1
        gauge = self.metrics.in_flight.labels(requested)
        gauge.inc()
        return Ticket(self, gauge)


class Ticket:
    """One admitted request; `leave()` (idempotent) frees its place."""

    def __init__(self, admission: Admission, gauge):
        self._admission = admission
        self._gauge = gauge
        self._left = False

    def leave(self) -> None:
        if not self._left:
            self._left = True
            self._admission.active -= 1
            self._gauge.dec()
