"""Errors that carry a Kubernetes ``Status``: the API tier renders them with one handler."""

from __future__ import annotations

from typing import Any


class StatusError(Exception):
    """An error a client sees as a ``kind: Status`` object."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(StatusError):
    code = 400
    reason = "BadRequest"


class Unauthorized(StatusError):
    code = 401
    reason = "Unauthorized"


class Forbidden(StatusError):
    code = 403
    reason = "Forbidden"


class NotFound(StatusError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(StatusError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(StatusError):
    code = 406
    reason = "NotAcceptable"


class Gone(StatusError):
    """410, reason Expired: a watch position older than the changes kept; the client relists."""

    code = 410
    reason = "Expired"


class ServiceUnavailable(StatusError):
    code = 503
    reason = "ServiceUnavailable"


class Conflict(StatusError):
    """409: e.g. a write carrying a resourceVersion that is not the object's current one."""

    code = 409
    reason = "Conflict"


class RequestEntityTooLarge(StatusError):
    code = 413
    reason = "RequestEntityTooLarge"
