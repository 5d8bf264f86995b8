"""One network policy for every S3 call: which CAs to trust, which proxy to go through.

The product has three S3 clients: boto3 (``check``, the readiness probe), httpx (proxy
mode) and the migration tools' own client (``upload``, ``verify``, ``pull``). Left to
their defaults they disagree: boto3 trusts ``AWS_CA_BUNDLE`` *instead of* any other
store, httpx and :mod:`ssl` trust the system store and ``SSL_CERT_FILE``, and a raw
socket goes through no proxy at all. Each client asks this module instead:

- CAs: the system store (OpenSSL's defaults, ``SSL_CERT_FILE``/``SSL_CERT_DIR``
  included) *plus* ``AWS_CA_BUNDLE``, or the ``ca_bundle`` of the AWS profile, read as
  boto3 reads them. One :class:`ssl.SSLContext` per client: loading a bundle costs
  milliseconds, far too much per connection.
- Proxy: ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` in either case, read by
  :func:`urllib.request.getproxies` and :func:`urllib.request.proxy_bypass`, as botocore
  reads them, so that every client bypasses the same hosts.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from .exceptions import ConfigError
from .settings import Settings

__all__ = [
    "ca_bundle",
    "is_untrusted",
    "proxy_for",
    "proxy_variable",
    "redact",
    "tls_context",
    "untrusted_message",
]


def ca_bundle(settings: Settings) -> str | None:
    """The extra CA bundle: ``AWS_CA_BUNDLE`` (environment or ``.env``), else the
    ``ca_bundle`` of the AWS config profile, as boto3 would find it."""
    if settings.aws_ca_bundle:
        return settings.aws_ca_bundle
    # Reads the environment and ~/.aws/config only: no credentials, no network.
    import botocore.session

    found = botocore.session.get_session().get_config_variable("ca_bundle")
    return str(found) if found else None


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A verifying TLS context with the system store and the extra CA bundle.

    Raises :class:`ConfigError` naming ``AWS_CA_BUNDLE`` when the bundle cannot be read.
    """
    context = ssl.create_default_context()
    bundle = ca_bundle(settings)
    if bundle:
        try:
            context.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(
                "AWS_CA_BUNDLE", f"cannot load the CA bundle {bundle!r}: {reason}"
            ) from None
    return context


def proxy_for(url: str) -> str | None:
    """The proxy URL for requests to ``url``, or None to connect directly."""
    parts = urlsplit(url)
    if proxy_bypass(parts.netloc):
        return None
    proxy = getproxies().get(parts.scheme)
    if not proxy:
        return None
    # "proxy:3128" means http://proxy:3128, as botocore and curl read it.
    return proxy if "://" in proxy else f"http://{proxy}"


def proxy_variable(url: str) -> str:
    """The variable that names the proxy for ``url``, for error messages."""
    return "HTTPS_PROXY" if url.startswith("https:") else "HTTP_PROXY"


def redact(proxy: str) -> str:
    """``proxy`` without its user and password, fit for a message or a log."""
    parts = urlsplit(proxy)
    if "@" not in parts.netloc:
        return proxy
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def is_untrusted(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a failed certificate verification."""
    seen: BaseException | None = exc
    for _ in range(10):  # causes and contexts, never an endless chain
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True  # botocore and httpx keep only the text of the ssl error
        seen = seen.__cause__ or seen.__context__
    return False


def untrusted_message(url: str, bundle: str | None) -> str:
    """One line saying that ``url``'s certificate is not trusted, and what to set."""
    host = urlsplit(url).netloc or url
    if bundle:
        return (
            f"the TLS certificate of {host} is signed by none of the CAs of {bundle!r} or"
            " the system store: point AWS_CA_BUNDLE at the PEM file of the CA that signed it"
        )
    return (
        f"the TLS certificate of {host} is signed by no CA of the system store: set"
        " AWS_CA_BUNDLE to the PEM file of the CA that signed it"
    )
