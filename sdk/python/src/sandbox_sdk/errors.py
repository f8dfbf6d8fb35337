"""Exceptions raised by the SDK.

Every error the server answers with has the same body, ``{"code", "message", "request_id", ...}``,
with a stable ``code`` (``session_not_found``, ``context_busy``, ...). :func:`error_from_response`
turns it into the :class:`SandboxError` subclass for its HTTP status; failures to reach the server
at all are :class:`ConnectionFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Type

import httpx

__all__ = [
    "SandboxError",
    "BadRequest",
    "AuthenticationError",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "ValidationError",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "ConnectionFailed",
    "StreamError",
    "WaitTimeout",
    "ConfigurationError",
    "FieldError",
    "error_from_response",
]


@dataclass(frozen=True)
class FieldError:
    """One field a ``validation_error`` names (``dependencies.0.version``) and what is wrong."""

    field: str
    message: str


class SandboxError(Exception):
    """An error the server answered with, or a failure to talk to it.

    Attributes:
        code: the server's stable error code (``session_not_found``), or a client-side one
            (``connection_failed``, ``stream_ended``).
        status: the HTTP status, ``None`` when no answer came.
        message: the human-readable message.
        request_id: the server's request id (quote it when reporting a problem).
        retry_after: seconds to wait before retrying, from ``Retry-After``, when given.
        body: the whole error body.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: Optional[int] = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
        body: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.body: Dict[str, Any] = body or {}

    def __str__(self) -> str:
        where = f" (HTTP {self.status}, request {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.message}{where}"


class BadRequest(SandboxError):
    """400: the request could not be read (``malformed_json``, ``invalid_path``, ...)."""


class AuthenticationError(SandboxError):
    """401 ``unauthorized``: no API key, or an unknown one."""


class PermissionDenied(SandboxError):
    """403: the key may not do this (``forbidden``, ``permission_denied``)."""


class NotFound(SandboxError):
    """404: no such session, execution, context, file, ... (``session_not_found``, ...)."""


class Conflict(SandboxError):
    """409: the resource's state forbids it (``context_busy``, ``session_not_running``, ...)."""


class PayloadTooLarge(SandboxError):
    """413: ``payload_too_large`` or ``code_too_large``."""


class ValidationError(SandboxError):
    """422: the request was understood but refused; ``errors`` names the fields."""

    @property
    def errors(self) -> List[FieldError]:
        """The fields at fault, as the server listed them (may be empty)."""
        return [
            FieldError(str(e.get("field", "")), str(e.get("message", "")))
            for e in self.body.get("errors") or []
            if isinstance(e, dict)
        ]


class RateLimited(SandboxError):
    """429: a quota or limit is reached (``quota_exceeded``, ``too_many_contexts``, ...);
    ``retry_after`` says when to try again."""


class ServerError(SandboxError):
    """5xx: the server or the sandbox failed (``internal_error``, ``sandbox_error``, ...)."""


class ServiceUnavailable(ServerError):
    """503: no capacity or a dependency is down (``capacity_exhausted``, ...);
    ``retry_after`` says when to try again."""


class ConnectionFailed(SandboxError):
    """The server could not be reached, or the connection broke before it answered."""


class StreamError(SandboxError):
    """A streamed execution ended without its result."""


class WaitTimeout(SandboxError, TimeoutError):
    """``ExecutionHandle.wait(timeout)`` gave up before the execution ended (code
    ``wait_timeout``); the execution goes on."""


class ConfigurationError(SandboxError):
    """The client lacks its server URL or API key."""


_BY_STATUS: Dict[int, Type[SandboxError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}


def _retry_after(response: httpx.Response) -> Optional[float]:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> SandboxError:
    """The exception for an error response (its body must have been read)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"message": response.text.strip() or response.reason_phrase}
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else SandboxError)
    return cls(
        str(body.get("message") or body.get("detail") or response.reason_phrase),
        code=str(body.get("code") or f"http_{status}"),
        status=status,
        request_id=body.get("request_id") or response.headers.get("x-request-id"),
        retry_after=_retry_after(response),
        body=body,
    )
