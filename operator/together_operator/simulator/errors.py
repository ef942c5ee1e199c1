"""API errors and their one wire shape, grpc-gateway's `google.rpc.Status`:
`{"code": <grpc code>, "message": "...", "details": [...]}`.

Together's API is served through grpc-gateway, so `code` is the gRPC status code that
grpc-gateway maps to the HTTP status. `details` is present only where a cause is stated in a
machine-readable way: a stock-out carries a `google.rpc.ErrorInfo` with reason `OUT_OF_STOCK`
(see the package's Deviations).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from together_operator.together.models import ERROR_INFO_TYPE, ErrorReason

# gRPC codes used below (google.rpc.Code).
CANCELLED: Final = 1
UNKNOWN: Final = 2
INVALID_ARGUMENT: Final = 3
DEADLINE_EXCEEDED: Final = 4
NOT_FOUND: Final = 5
ALREADY_EXISTS: Final = 6
PERMISSION_DENIED: Final = 7
RESOURCE_EXHAUSTED: Final = 8
FAILED_PRECONDITION: Final = 9
ABORTED: Final = 10
INTERNAL: Final = 13
UNIMPLEMENTED: Final = 12
UNAVAILABLE: Final = 14
UNAUTHENTICATED: Final = 16

GRPC_CODE_FOR_HTTP_STATUS: Final[dict[int, int]] = {
    400: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    409: ABORTED,
    429: RESOURCE_EXHAUSTED,
    499: CANCELLED,
    500: INTERNAL,
    501: UNIMPLEMENTED,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}
ERROR_DOMAIN: Final = "compute.together.ai"


def grpc_code(http_status: int) -> int:
    """The gRPC code grpc-gateway pairs with `http_status` (UNKNOWN when there is none)."""
    return GRPC_CODE_FOR_HTTP_STATUS.get(http_status, UNKNOWN)


def error_info(reason: str, **metadata: str) -> dict[str, Any]:
    """A `google.rpc.ErrorInfo` detail: a machine-readable `reason` for clients to act on."""
    return {
        "@type": ERROR_INFO_TYPE,
        "reason": reason,
        "domain": ERROR_DOMAIN,
        "metadata": metadata,
    }


def error_body(
    http_status: int,
    message: str,
    *,
    code: int | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, object]:
    """The JSON body of an error response."""
    body: dict[str, object] = {
        "code": grpc_code(http_status) if code is None else code,
        "message": message,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """An error the API answers with: an HTTP status, a gRPC code and a message for a person."""

    status: ClassVar[int] = 500
    code: ClassVar[int | None] = None  # None: the code grpc-gateway pairs with `status`

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, object]:
        """The error's JSON body."""
        return error_body(self.status, self.message, code=self.code, details=self.details)


class InvalidRequest(ApiError):
    """The request is malformed or asks for something the service refuses (400)."""

    status = 400


class FailedPrecondition(ApiError):
    """The request is well-formed but the resource is in the wrong state for it (400, as
    grpc-gateway maps FAILED_PRECONDITION): approving a remediation that is not pending."""

    status = 400
    code = FAILED_PRECONDITION


class NotFound(ApiError):
    """No such cluster, volume, add-on, remediation or path (404)."""

    status = 404


class Conflict(ApiError):
    """The request clashes with the current state: being deleted, in use (409)."""

    status = 409


class AlreadyExists(Conflict):
    """A resource with that name exists already (409, gRPC ALREADY_EXISTS)."""

    code = ALREADY_EXISTS


class OutOfStock(Conflict):
    """The capacity asked for is not available now (409 with ErrorInfo reason OUT_OF_STOCK)."""

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message, details=[error_info(ErrorReason.OUT_OF_STOCK, **metadata)])
