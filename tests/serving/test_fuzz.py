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
from starlette.types import Receive, Scope, Send

from gateway import MediaGateway, Settings
from tests.conftest import SECRET
from tests.helpers import Reply, call

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
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[MediaGateway, str]:
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


def check(reply: Reply, root: str, relpath: str | None) -> None:
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
def test_arbitrary_bytes(world: tuple[MediaGateway, str], raw: bytes) -> None:
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
def test_signed_or_not(world: tuple[MediaGateway, str], path: str, signed: bool) -> None:
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


# Attack families of issue 17, as properties.

GATEWAY_HEADER_NAMES = ("x-media-path", "x-original-uri")


def spellings(name: str) -> st.SearchStrategy[bytes]:
    """Every spelling of ``name`` that a server may map to the same variable: each
    letter in either case, each dash a dash or an underscore."""
    parts = [
        st.sampled_from([c, c.upper()])
        if c.isalpha()
        else st.sampled_from(["-", "_"])
        if c == "-"
        else st.just(c)
        for c in name
    ]
    return st.tuples(*parts).map(lambda chars: "".join(chars).encode("latin-1"))


forged_headers = st.lists(
    st.tuples(
        st.sampled_from(GATEWAY_HEADER_NAMES).flatmap(spellings),
        st.binary(min_size=0, max_size=12).map(lambda b: quote_from_bytes(b).encode()),
    ),
    min_size=1,
    max_size=4,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(forged=forged_headers, query=st.sampled_from([b"", b"share=1", b"a=b&c=d"]))
def test_delegate_sees_only_the_gateways_headers(
    world: tuple[MediaGateway, str], forged: list[tuple[bytes, bytes]], query: bytes
) -> None:
    """Whatever spellings and repeats a client sends, the app's delegate sees exactly one
    X-Media-Path and one X-Original-URI, both the gateway's."""
    _, root = world
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    gateway = MediaGateway(
        app, settings=Settings(secret_keys=(SECRET,), media_root=Path(root), auth_delegate="/auth")
    )
    target = b"/media/a.txt" + (b"?" + query if query else b"")
    assert call(gateway, target, headers=[(b"cookie", b"s=1"), *forged]).status == 200
    (headers,) = seen
    normal = [(k.lower().replace(b"_", b"-"), v) for k, v in headers]
    assert [v for k, v in normal if k == b"x-media-path"] == [b"a.txt"]
    assert [v for k, v in normal if k == b"x-original-uri"] == [target]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    queries=st.lists(
        st.sampled_from([b"", b"share=T", b"share=U", b"share=T&x=1", b"x=1"]),
        min_size=1,
        max_size=8,
    )
)
def test_remembered_decisions_follow_the_query(
    world: tuple[MediaGateway, str], queries: list[bytes]
) -> None:
    """With a decision cache, every answer equals what the delegate would say for that
    exact query (a share link allows only itself)."""
    _, root = world

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        uri = dict(scope["headers"])[b"x-original-uri"]
        status = 200 if uri.endswith(b"share=T") else 403
        remember = [(b"cache-control", b"private, max-age=60")]
        await send({"type": "http.response.start", "status": status, "headers": remember})
        await send({"type": "http.response.body", "body": b""})

    gateway = MediaGateway(
        app,
        settings=Settings(
            secret_keys=(SECRET,), media_root=Path(root), auth_delegate="/auth", auth_cache_ttl=60
        ),
    )
    for query in queries:
        target = b"/media/a.txt" + (b"?" + query if query else b"")
        expected = 200 if query.endswith(b"share=T") else 403
        assert call(gateway, target, headers={"cookie": "s=1"}).status == expected


mime_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.+-", min_size=1, max_size=8)
mime_types = st.one_of(
    st.sampled_from(["text/html", "image/svg+xml", "text/plain", "image/png", "text/xml"]),
    st.builds(
        lambda a, b: f"{a}/{b}", st.sampled_from(["text", "image", "application"]), mime_token
    ),
).filter(lambda t: t[0].isalnum())


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content_type=mime_types, name=st.sampled_from(["a.txt", "dir/b.txt", "caf\u00e9.txt"]))
def test_sandbox_follows_the_signed_type(
    world: tuple[MediaGateway, str], content_type: str, name: str
) -> None:
    """A signed content-type override is sandboxed exactly when that type is active,
    whatever the file's name."""
    from gateway.http import SANDBOX_CSP, is_active

    gateway, _ = world
    reply = call(gateway, gateway.signer.sign_url(name, content_type=content_type))
    assert reply.status == 200
    assert reply.headers["content-type"] == content_type
    assert (reply.headers.get("content-security-policy") == SANDBOX_CSP) is is_active(content_type)
