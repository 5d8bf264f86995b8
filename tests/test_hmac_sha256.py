"""The keyed-once HMAC-SHA256 against the standard library."""

from __future__ import annotations

import hmac

from hypothesis import given, strategies as st

from gateway.hmac_sha256 import HmacSha256


@given(key=st.binary(max_size=200), message=st.binary(max_size=300))
def test_equals_the_standard_library(key: bytes, message: bytes) -> None:
    """hmac.digest's bytes for every key length (longer than a block too, which is
    hashed first), and again for the next message: the keyed states are copied, never
    consumed."""
    mac = HmacSha256(key)
    expected = hmac.digest(key, message, "sha256")
    assert mac.digest(message) == expected
    assert mac.digest(message) == expected
    assert mac.digest(message + b"x") == hmac.digest(key, message + b"x", "sha256")
