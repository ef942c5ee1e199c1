"""One exception hierarchy for everything that can go wrong talking to Together.

Each class carries what it means, so callers never re-derive it from status codes or text:
``reason`` is a CamelCase word for conditions, events and metrics; ``heals`` says whether
waiting and trying again can succeed without anyone changing anything; ``RetryLater`` errors
carry ``retry_after`` when Together said when to come back. ``AmbiguousCreate`` means a create
may or may not have happened and must be resolved by listing, never by posting again.

Classification (:func:`error_for_status`) goes by the HTTP status first, then by the error
body's structured fields: the gRPC ``code`` (ALREADY_EXISTS) and the ``google.rpc.ErrorInfo``
reasons in ``details`` (``OUT_OF_STOCK``). The contract documents no error body, so the
message text is only a fallback, for a 409 that says "out of stock" without the structured
marker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Final

from together_operator.together.models import ErrorReason

GRPC_ALREADY_EXISTS: Final = 6
OUT_OF_STOCK_WORDS: Final = "out of stock"


class TogetherError(Exception):
    """Base class. ``message`` is Together's own words (or ours when there were none)."""

    reason: ClassVar[str] = "TogetherUnreachable"
    heals: ClassVar[bool] = False

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

    reason = "InvalidRequest"


class Unauthorized(TogetherError):
    """401: the API key is missing, wrong or revoked."""

    reason = "Unauthorized"


class Forbidden(TogetherError):
    """403: the key is valid but may not do this (project membership, say)."""

    reason = "Forbidden"


class NotFound(TogetherError):
    """404: no such cluster (or it finished deleting)."""

    reason = "NotFound"


class Conflict(TogetherError):
    """409: the request conflicts with the cluster's state."""

    reason = "Conflict"
    heals = True


class OutOfStock(Conflict):
    """409: the capacity asked for is not available right now."""

    reason = "OutOfStock"


class AlreadyExists(Conflict):
    """409 with gRPC ALREADY_EXISTS: something of that name exists (an add-on, say); trying
    the same create again cannot succeed."""

    reason = "AlreadyExists"
    heals = False


class RetryLater(TogetherError):
    """An answer that says "come back later", with ``retry_after`` seconds when given."""

    heals = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimited(RetryLater):
    """429: slow down; ``retry_after`` seconds when Together said so."""

    reason = "RateLimited"


class ServerError(RetryLater):
    """5xx: Together's side failed; usually transient (503 may carry Retry-After)."""

    reason = "TogetherUnavailable"


class InvalidResponse(RetryLater):
    """Together answered 200 with a body that does not fit the contract."""

    reason = "InvalidResponse"


class TransportError(TogetherError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure."""

    reason = "TogetherUnreachable"
    heals = True


class AmbiguousCreate(TransportError):
    """A create was sent but no answer came back: the cluster may or may not exist.

    Never answered by posting again; the caller must list clusters and match by name.
    """


_BY_STATUS: dict[int, type[TogetherError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
}


def error_for_status(
    status: int,
    message: str,
    *,
    operation: str,
    retry_after: float | None = None,
    code: int | None = None,
    reasons: Iterable[str] = (),
) -> TogetherError:
    """The exception for an HTTP error status, refined by the body's gRPC ``code`` and
    ErrorInfo ``reasons``; for a 409 without them, by what the message says (the fallback)."""
    if status == 429:
        return RateLimited(message, status=status, operation=operation, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, status=status, operation=operation, retry_after=retry_after)
    if status == 409:
        return _conflict(message, code, frozenset(reasons))(
            message, status=status, operation=operation
        )
    return _BY_STATUS.get(status, InvalidRequest)(message, status=status, operation=operation)


def _conflict(message: str, code: int | None, reasons: frozenset[str]) -> type[Conflict]:
    if ErrorReason.OUT_OF_STOCK in reasons:
        return OutOfStock
    if code == GRPC_ALREADY_EXISTS:
        return AlreadyExists
    if not reasons and OUT_OF_STOCK_WORDS in message.lower():
        return OutOfStock  # the documented fallback: no structured marker, but the words
    return Conflict
