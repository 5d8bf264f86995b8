"""Property tests on path resolution and signing: RELIABILITY item 11.

A quick profile runs in ``make test``; ``make fuzz`` runs the long one
(``HYPOTHESIS_PROFILE=fuzz``, 100,000 examples).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway import MediaGateway, Settings
from tests.conftest import SECRET
from tests.helpers import call

settings.register_profile("quick", max_examples=300, deadline=None)
settings.register_profile("fuzz", max_examples=100_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

SECRET_BYTES = b"OUTSIDE-SECRET"
FILES = {
    "a.txt": b"a",
    "public/p.txt": b"p",
    "dir/b.txt": b"b",
    "caf\u00e9.txt": b"c",
    "%2e%2e": b"dots",
}
FRAGMENTS = [
    "..",
    ".",
    "/",
    "%2e",
    "%2f",
    "%5c",
    "\\",
    "%00",
    "%25",
    "public",
    "a.txt",
    "dir",
    "\uff0e",
    "secret.txt",
    "//",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[MediaGateway, str]:
    base = tmp_path_factory.mktemp("fuzz")
    (base / "secret.txt").write_bytes(SECRET_BYTES)
    root = base / "media"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "dir" / "out").symlink_to(base)
    (root / "up.txt").symlink_to(base / "secret.txt")
    gateway = MediaGateway(
        settings=Settings(secret_keys=(SECRET,), media_root=root, public_prefixes=("public",))
    )
    return gateway, os.path.realpath(root)


def check(reply, root: str, relpath: str | None) -> None:
    assert reply.status < 500, reply
    assert SECRET_BYTES not in reply.body
    if reply.status == 200:
        assert relpath is not None
        real = os.path.realpath(os.path.join(root, relpath))
        assert real.startswith(root + os.sep)
        assert Path(real).read_bytes() == reply.body


path_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=8).map(
    "".join
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_arbitrary_bytes(world, raw):
    """Any bytes after /media/ give a 4xx or a file under the real root, never a 5xx."""
    gateway, root = world
    for target in (
        b"/media/" + quote_from_bytes(raw, safe="/%").encode(),
        b"/media/public/" + quote_from_bytes(raw).encode(),
    ):
        reply = call(gateway, target)
        check(reply, root, None if reply.status != 200 else _decoded(target))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=path_text, signed=st.booleans())
def test_signed_or_not(world, path, signed):
    """Signed arbitrary paths are served only when they resolve inside the root."""
    gateway, root = world
    try:
        target = gateway.signer.sign_url(path) if signed else "/media/" + path
    except ValueError:
        target = "/media/" + path
    encoded = target.encode("utf-8", "surrogatepass")
    reply = call(gateway, encoded)
    check(reply, root, _decoded(encoded.split(b"?")[0]) if reply.status == 200 else None)


def _decoded(target: bytes) -> str:
    return unquote_to_bytes(target).decode()[len("/media/") :]
