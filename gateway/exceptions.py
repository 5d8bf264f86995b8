"""The gateway's exceptions, rooted in one class.

::

    MediaGatewayError
    ├── ConfigError                 bad settings; stops start-up (CLI exit code 2)
    ├── RequestError                a media request that cannot be answered (status_code)
    │   ├── BadRequest              400
    │   ├── Unauthorized            401: the app's delegate asks for credentials
    │   ├── Forbidden               403
    │   │   ├── BadSignature        403: missing, altered or foreign signature
    │   │   └── SignatureExpired    403: a valid signature past its expiry
    │   ├── NotFound                404: also every path that is unsafe to resolve
    │   ├── MethodNotAllowed        405
    │   ├── RequestTimeout          408: an upload's body stalled
    │   ├── PreconditionFailed      412
    │   ├── PayloadTooLarge         413: a direct upload over its ticket's size cap
    │   ├── URITooLong              414
    │   ├── UnsupportedMediaType    415: a direct upload of a type its ticket refuses
    │   ├── RangeNotSatisfiable     416
    │   ├── BadGateway              502: S3 failed or refused our credentials
    │   ├── ServiceUnavailable      503: retry later (Retry-After)
    │   │   └── FileChanged         503: the file changed while it was being read
    │   └── GatewayTimeout          504: S3 did not answer in time
    └── MigrationError              the batch copier (``upload``, ``verify``, ``pull``)
        ├── S3Error                 S3 refused a request or stayed unreachable (code, status)
        ├── ProtocolError           an answer that is not HTTP/1.1 we understand; retried
        ├── ProxyError              the proxy is unreachable or refused the tunnel; retried
        ├── SourceChanged           a local file changed while it was read or sent; sent again
        └── Cancelled               the run was interrupted; in-flight work stops and cleans up

``RequestError.status_code`` is the one place where an error maps to an HTTP status;
the message is the short plain-text reason sent to the client, so it never holds a
file system path, a key or a signature. ``ProtocolError`` and ``ProxyError`` also
subclass ``ConnectionError``: a dropped connection and a broken answer are retried alike.
"""

from __future__ import annotations

__all__ = [
    "BadGateway",
    "BadRequest",
    "BadSignature",
    "Cancelled",
    "ConfigError",
    "FileChanged",
    "Forbidden",
    "GatewayTimeout",
    "MediaGatewayError",
    "MethodNotAllowed",
    "MigrationError",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "ProtocolError",
    "ProxyError",
    "RangeNotSatisfiable",
    "RequestError",
    "RequestTimeout",
    "S3Error",
    "ServiceUnavailable",
    "SignatureExpired",
    "SourceChanged",
    "URITooLong",
    "Unauthorized",
    "UnsupportedMediaType",
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


class RequestTimeout(RequestError):
    status_code = 408
    default_reason = "Upload body stalled"


class PreconditionFailed(RequestError):
    status_code = 412
    default_reason = "Precondition failed"


class PayloadTooLarge(RequestError):
    status_code = 413
    default_reason = "Upload too large"


class UnsupportedMediaType(RequestError):
    status_code = 415
    default_reason = "Upload type not allowed"


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


class MigrationError(MediaGatewayError):
    """An error of the batch copier (:mod:`gateway.migrate`)."""


class S3Error(MigrationError):
    """S3 refused a request (``code`` from its XML, or the HTTP status), or it could not
    be reached after every retry (``status`` None). ``region`` is the bucket's region
    when S3 sent us elsewhere (301, 307, or a 400 naming the region it expects)."""

    def __init__(
        self, code: str, message: str, status: int | None = None, region: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status
        self.region = region


class ProtocolError(MigrationError, ConnectionError):
    """The server's answer is not HTTP/1.1 we understand, or it closed the connection
    mid-answer: the connection is dropped and the request tried again."""


class ProxyError(MigrationError, ConnectionError):
    """The proxy cannot be reached or refused the tunnel. Tried again like a dropped
    connection (a proxy restarts); never answered by connecting directly instead."""


class SourceChanged(MigrationError):
    """A local file changed while it was being read or sent (not the 503
    :class:`FileChanged` of the request path): it is read and sent again."""


class Cancelled(MigrationError):
    """The run was interrupted (SIGINT, SIGTERM); in-flight work stops and cleans up."""
