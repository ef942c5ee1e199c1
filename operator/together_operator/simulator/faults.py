"""Injected faults: failed requests (bursts or a probability), rate limiting with Retry-After,
added latency, and connections dropped after a request was committed.

Faults target an operation by its contract `operationId` (e.g. `GPUClusterService_Create`),
or every operation with `*`. They are set from CLI flags at start-up or through the admin API.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from together_operator.together import operations

ANY_OPERATION = "*"
# Statuses a client is expected to retry later: they carry a Retry-After header.
_RETRY_LATER_STATUSES = (429, 503)


class FaultSpec(BaseModel):
    """Base of the admin payloads: strict, so a typo is an error instead of a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class FailureSpec(FaultSpec):
    """Fail requests to `operation` with `status`: the next `count` of them (all when None),
    each with `probability`. 429 and 503 answers carry `Retry-After: retry_after`; with
    `reason`, the error body carries that ErrorInfo reason."""

    operation: str = ANY_OPERATION
    status: int = Field(ge=400, le=599)
    count: int | None = Field(default=None, ge=1)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    retry_after: float | None = Field(default=None, ge=0)
    message: str | None = None
    # A google.rpc.ErrorInfo reason for the answer's `details` (e.g. OUT_OF_STOCK).
    reason: str | None = Field(default=None, min_length=1)

    @property
    def retry_after_header(self) -> str | None:
        """The Retry-After header value to send, if any (whole seconds, rounded up)."""
        if self.retry_after is None and self.status not in _RETRY_LATER_STATUSES:
            return None
        seconds = 1.0 if self.retry_after is None else self.retry_after
        return str(max(0, -int(-seconds // 1)))


class LatencySpec(FaultSpec):
    """Delay every request to `operation` by `seconds` (0 removes the delay). With
    `after_commit`, the request is applied first and only the answer is delayed: a client
    that gives up (or dies) meanwhile leaves a committed change behind."""

    operation: str = ANY_OPERATION
    seconds: float = Field(ge=0, le=600)
    after_commit: bool = False


class DropSpec(FaultSpec):
    """Close the connection without an answer after the next `count` successful requests to
    `operation` were committed: the ambiguous outcome a client must survive."""

    operation: str = operations.CREATE_CLUSTER.id
    count: int = Field(default=1, ge=1)


class Faults:
    """The faults in force, consumed as requests arrive."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self.failures: list[FailureSpec] = []
        self.latencies: dict[str, float] = {}
        self.answer_latencies: dict[str, float] = {}
        self.drops: dict[str, int] = {}

    def add_failure(self, spec: FailureSpec) -> None:
        """Add a failure rule; rules are tried in the order they were added."""
        self.failures.append(spec)

    def set_latency(self, spec: LatencySpec) -> None:
        """Set (or with 0 seconds, clear) the delay of an operation."""
        table = self.answer_latencies if spec.after_commit else self.latencies
        if spec.seconds:
            table[spec.operation] = spec.seconds
        else:
            table.pop(spec.operation, None)

    def add_drops(self, spec: DropSpec) -> None:
        """Drop the connection after the next `spec.count` commits of an operation."""
        self.drops[spec.operation] = self.drops.get(spec.operation, 0) + spec.count

    def reset(self) -> None:
        """Remove every fault."""
        self.failures.clear()
        self.latencies.clear()
        self.answer_latencies.clear()
        self.drops.clear()

    def failure_for(self, operation: str) -> FailureSpec | None:
        """The failure to answer this request to `operation` with, if one fires (consumed)."""
        for rule in self.failures:
            if rule.operation not in (operation, ANY_OPERATION):
                continue
            if self._random.random() >= rule.probability:
                continue
            if rule.count is not None:
                rule.count -= 1
                if rule.count == 0:
                    self.failures.remove(rule)
            return rule
        return None

    def latency_for(self, operation: str, *, after_commit: bool = False) -> float:
        """Seconds to delay a request to `operation` (or, `after_commit`, its answer)."""
        table = self.answer_latencies if after_commit else self.latencies
        return table.get(operation, table.get(ANY_OPERATION, 0.0))

    def take_drop(self, operation: str) -> bool:
        """Whether to drop the connection after this committed request (consumed)."""
        for key in (operation, ANY_OPERATION):
            if self.drops.get(key, 0) > 0:
                self.drops[key] -= 1
                if not self.drops[key]:
                    del self.drops[key]
                return True
        return False

    def describe(self) -> dict[str, Any]:
        """The faults in force, as the admin API shows them."""
        return {
            "failures": [rule.model_dump(exclude_none=True) for rule in self.failures],
            "latencies": dict(self.latencies),
            "answer_latencies": dict(self.answer_latencies),
            "drops": dict(self.drops),
        }


def _split(text: str, parts: int, usage: str) -> list[str]:
    fields = text.rsplit(":", parts - 1)
    if len(fields) != parts or not all(fields):
        raise ValueError(f"expected {usage}, got {text!r}")
    return fields


def parse_failure_burst(text: str) -> FailureSpec:
    """`OPERATION:STATUS:COUNT`: the next COUNT requests fail with STATUS."""
    operation, status, count = _split(text, 3, "OPERATION:STATUS:COUNT")
    return FailureSpec(operation=operation, status=int(status), count=int(count))


def parse_failure_rate(text: str) -> FailureSpec:
    """`OPERATION:STATUS:PROBABILITY`: each request fails with STATUS with that probability."""
    operation, status, probability = _split(text, 3, "OPERATION:STATUS:PROBABILITY")
    return FailureSpec(operation=operation, status=int(status), probability=float(probability))


def parse_latency(text: str) -> LatencySpec:
    """`OPERATION:SECONDS`: delay every request to OPERATION."""
    operation, seconds = _split(text, 2, "OPERATION:SECONDS")
    return LatencySpec(operation=operation, seconds=float(seconds))


def parse_drop(text: str) -> DropSpec:
    """`OPERATION:COUNT`: drop the connection after COUNT committed requests."""
    operation, count = _split(text, 2, "OPERATION:COUNT")
    return DropSpec(operation=operation, count=int(count))
