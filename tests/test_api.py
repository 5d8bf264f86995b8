"""The public API is small and listed in __all__."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import gateway
from gateway import exceptions
from tests.conftest import SECRET


def test_all() -> None:
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
            "UploadedFile",
            "__version__",
            "sign_upload",
            "sign_url",
            "verify_receipt",
        ]
    )
    for name in gateway.__all__:
        assert hasattr(gateway, name)


def package_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of the package, by dotted name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            # type(value), not isinstance(): Django's lazy settings answer __class__ by
            # reading the settings.
            if not (issubclass(type(value), type) and issubclass(value, BaseException)):
                continue
            if value.__module__ == module.__name__:
                found[f"{info.name}.{name}"] = value
    return found


def test_exception_tree() -> None:
    """Every exception class of the package, in every module, is a MediaGatewayError;
    signature errors are 403s."""
    found = package_exceptions()
    assert "gateway.exceptions.S3Error" in found  # the walk reaches every layer
    assert "gateway.migrate.transport._Retry" in found
    outside = [
        name for name, cls in found.items() if not issubclass(cls, gateway.MediaGatewayError)
    ]
    assert outside == []
    # The migration's errors are one branch, and the walk's is not the 503 one.
    for name in ("S3Error", "ProtocolError", "ProxyError", "SourceChanged", "Cancelled"):
        assert issubclass(getattr(exceptions, name), exceptions.MigrationError)
    assert not issubclass(exceptions.SourceChanged, exceptions.RequestError)
    assert issubclass(gateway.ConfigError, gateway.MediaGatewayError)
    assert issubclass(gateway.SignatureExpired, gateway.BadSignature.__mro__[1])
    assert gateway.BadSignature().status_code == 403
    assert gateway.NotFound().status_code == 404


def test_sign_url_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """gateway.sign_url uses the settings from the environment."""
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("MEDIA_URL", "/uploads/")
    gateway._default_signer.cache_clear()
    try:
        url = gateway.sign_url("a b.jpg", expires_in=60)
    finally:
        gateway._default_signer.cache_clear()
    assert url.startswith("/uploads/a%20b.jpg?exp=")
