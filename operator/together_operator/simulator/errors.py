"""API errors and their one wire shape: `{"code": <grpc code>, "message": "..."}`.

Together's API is served through grpc-gateway, so the `code` is the gRPC status code that
grpc-gateway would map to the HTTP status.
"""

from __future__ import annotations

from typing import Final

GRPC_CODE_FOR_HTTP_STATUS: Final[dict[int, int]] = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    409: 10,  # ABORTED
    429: 8,  # RESOURCE_EXHAUSTED
    499: 1,  # CANCELLED
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}


def grpc_code(http_status: int) -> int:
    """The gRPC code grpc-gateway pairs with `http_status` (UNKNOWN = 2 when there is none)."""
    return GRPC_CODE_FOR_HTTP_STATUS.get(http_status, 2)


def error_body(http_status: int, message: str) -> dict[str, object]:
    """The JSON body of an error response."""
    return {"code": grpc_code(http_status), "message": message}


class ApiError(Exception):
    """An error the API answers with: an HTTP status and a message for a person."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ApiError):
    """The request is malformed or asks for something the service refuses (400)."""

    status = 400


class NotFound(ApiError):
    """No such cluster, volume or path (404)."""

    status = 404


class Conflict(ApiError):
    """The request clashes with the current state: out of stock, being deleted, in use (409)."""

    status = 409


class NotImplementedInSimulator(ApiError):
    """A contract operation the simulator does not serve (501)."""

    status = 501
