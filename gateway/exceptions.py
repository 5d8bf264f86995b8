"""The gateway's exceptions, rooted in one class.

::

    MediaGatewayError
    ├── ConfigError                 bad settings; stops start-up (CLI exit code 2)
    └── RequestError                a media request that cannot be answered (status_code)
        ├── BadRequest              400
        ├── Unauthorized            401: the app's delegate asks for credentials
        ├── Forbidden               403
        │   ├── BadSignature        403: missing, altered or foreign signature
        │   └── SignatureExpired    403: a valid signature past its expiry
        ├── NotFound                404: also every path that is unsafe to resolve
        ├── MethodNotAllowed        405
        ├── PreconditionFailed      412
        ├── URITooLong              414
        ├── RangeNotSatisfiable     416
        ├── BadGateway              502: S3 failed or refused our credentials
        ├── ServiceUnavailable      503: retry later (Retry-After)
        │   └── FileChanged         503: the file changed while it was being read
        └── GatewayTimeout          504: S3 did not answer in time

``RequestError.status_code`` is the one place where an error maps to an HTTP status;
the message is the short plain-text reason sent to the client, so it never holds a
file system path, a key or a signature.
"""

from __future__ import annotations

__all__ = [
    "BadGateway",
    "BadRequest",
    "BadSignature",
    "ConfigError",
    "FileChanged",
    "Forbidden",
    "GatewayTimeout",
    "MediaGatewayError",
    "MethodNotAllowed",
    "NotFound",
    "PreconditionFailed",
    "RangeNotSatisfiable",
    "RequestError",
    "ServiceUnavailable",
    "SignatureExpired",
    "URITooLong",
    "Unauthorized",
]


class MediaGatewayError(Exception):
    """Base class of every error the gateway raises."""


class ConfigError(MediaGatewayError):
    """A setting is missing or invalid. The message names the variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class RequestError(MediaGatewayError):
    """A media request that is answered with an error status."""

    status_code = 500
    default_reason = "Internal error"

    def __init__(self, reason: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason or self.default_reason)
        self.reason = reason or self.default_reason
        self.headers = headers or {}


class BadRequest(RequestError):
    status_code = 400
    default_reason = "Bad request"


class Unauthorized(RequestError):
    status_code = 401
    default_reason = "Authentication required"


class Forbidden(RequestError):
    status_code = 403
    default_reason = "Forbidden"


class BadSignature(Forbidden):
    default_reason = "Invalid or missing signature"


class SignatureExpired(Forbidden):
    default_reason = "Signature expired"


class NotFound(RequestError):
    status_code = 404
    default_reason = "Not found"


class MethodNotAllowed(RequestError):
    status_code = 405
    default_reason = "Method not allowed"


class PreconditionFailed(RequestError):
    status_code = 412
    default_reason = "Precondition failed"


class URITooLong(RequestError):
    status_code = 414
    default_reason = "URI too long"


class RangeNotSatisfiable(RequestError):
    status_code = 416
    default_reason = "Range not satisfiable"


class BadGateway(RequestError):
    status_code = 502
    default_reason = "Storage error"


class ServiceUnavailable(RequestError):
    status_code = 503
    default_reason = "Storage busy; retry"

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason, headers={"retry-after": "1"})


class FileChanged(ServiceUnavailable):
    default_reason = "File changed while being read; retry"


class GatewayTimeout(RequestError):
    status_code = 504
    default_reason = "Storage did not answer in time"
