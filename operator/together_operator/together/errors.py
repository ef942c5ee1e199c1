"""One exception hierarchy for everything that can go wrong talking to Together.

Callers branch on the type, never on status codes or message text: ``NotFound`` means gone,
``RateLimited.retry_after`` says when to come back, ``AmbiguousCreate`` means a create may or
may not have happened and must be resolved by listing, never by posting again.
"""

from __future__ import annotations

from typing import Any


class TogetherError(Exception):
    """Base class. ``message`` is Together's own words (or ours when there were none)."""

    #: Whether waiting and trying again can succeed without anyone changing anything.
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, operation: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.operation = operation

    def __str__(self) -> str:
        where = f"{self.operation}: " if self.operation else ""
        code = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{where}{code}{self.message}"


class InvalidRequest(TogetherError):
    """400: Together rejected the request; the spec must change."""


class Unauthorized(TogetherError):
    """401: the API key is missing, wrong or revoked."""


class Forbidden(TogetherError):
    """403: the key is valid but may not do this (project membership, say)."""


class NotFound(TogetherError):
    """404: no such cluster (or it finished deleting)."""


class Conflict(TogetherError):
    """409: the request conflicts with the cluster's state, or capacity is out of stock."""

    retryable = True

    @property
    def out_of_stock(self) -> bool:
        return "out of stock" in self.message.lower()


class RetryLater(TogetherError):
    """An answer that says "come back later", with ``retry_after`` seconds when given."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimited(RetryLater):
    """429: slow down; ``retry_after`` seconds when Together said so."""


class ServerError(RetryLater):
    """5xx: Together's side failed; usually transient (503 may carry Retry-After)."""


class InvalidResponse(RetryLater):
    """Together answered 200 with a body that does not fit the contract."""


class TransportError(TogetherError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure."""

    retryable = True


class AmbiguousCreate(TransportError):
    """A create was sent but no answer came back: the cluster may or may not exist.

    Never answered by posting again; the caller must list clusters and match by name.
    """


def error_for_status(
    status: int, message: str, *, operation: str, retry_after: float | None = None
) -> TogetherError:
    """The exception type for an HTTP error status."""
    kinds: dict[int, type[TogetherError]] = {
        400: InvalidRequest,
        401: Unauthorized,
        403: Forbidden,
        404: NotFound,
        409: Conflict,
        422: InvalidRequest,
    }
    if status == 429:
        return RateLimited(message, status=status, operation=operation, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, status=status, operation=operation, retry_after=retry_after)
    return kinds.get(status, InvalidRequest)(message, status=status, operation=operation)
