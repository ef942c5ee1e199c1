"""One backoff for every retry: the client's, the fleet observer's and the reconciler's.

Exponential from ``base`` seconds, capped at ``cap``, optionally jittered so that a fleet's
retries spread out, and never shorter than a server's ``Retry-After``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """How long to wait after the n-th consecutive failure."""

    base: float
    cap: float
    #: Up to this fraction of each delay is removed at random (0: no jitter).
    jitter: float = 0.0
    #: The exponent stops growing here, so that a long outage does not overflow.
    max_doublings: int = 10

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` (>= 1) failures in a row; at least
        ``retry_after`` when the server named one, at most ``cap`` otherwise."""
        exponential = self.base * 2.0 ** min(max(failures - 1, 0), self.max_doublings)
        delay = min(exponential, self.cap)
        if self.jitter:
            delay *= random.uniform(1.0 - self.jitter, 1.0)
        return max(delay, retry_after or 0.0)


@dataclass
class Backoff:
    """A failure count with its policy: ``failed`` says how long to wait, ``succeeded`` resets."""

    policy: BackoffPolicy
    failures: int = 0

    def failed(self, retry_after: float | None = None) -> float:
        """Count one more failure; the seconds to wait before the next try."""
        self.failures += 1
        return self.policy.delay(self.failures, retry_after)

    def succeeded(self) -> None:
        self.failures = 0
