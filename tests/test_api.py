"""The public API is small and listed in __all__."""

from __future__ import annotations

import gateway
from tests.conftest import SECRET


def test_all():
    """__all__ lists exactly the public names, and each exists."""
    assert sorted(gateway.__all__) == sorted(
        [
            "BadSignature",
            "ConfigError",
            "MediaGateway",
            "MediaGatewayError",
            "NotFound",
            "RequestError",
            "Settings",
            "SignatureExpired",
            "URLSigner",
            "__version__",
            "sign_url",
        ]
    )
    for name in gateway.__all__:
        assert hasattr(gateway, name)


def test_exception_tree():
    """Every error is a MediaGatewayError; signature errors are 403s."""
    assert issubclass(gateway.ConfigError, gateway.MediaGatewayError)
    assert issubclass(gateway.SignatureExpired, gateway.BadSignature.__mro__[1])
    assert gateway.BadSignature().status_code == 403
    assert gateway.NotFound().status_code == 404


def test_sign_url_reads_the_environment(monkeypatch):
    """gateway.sign_url uses the settings from the environment."""
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("MEDIA_URL", "/uploads/")
    gateway._default_signer.cache_clear()
    try:
        url = gateway.sign_url("a b.jpg", expires_in=60)
    finally:
        gateway._default_signer.cache_clear()
    assert url.startswith("/uploads/a%20b.jpg?exp=")
