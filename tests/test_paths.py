"""Path resolution and traversal: RELIABILITY items 1-13."""

from __future__ import annotations

import os
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import MediaGateway, Settings
from gateway.exceptions import BadRequest, NotFound, URITooLong
from gateway.paths import open_regular_file, relative_path, validate_relpath
from tests.helpers import Reply, call, raw_request, settle

SECRET_BYTES = b"TOP-SECRET outside the media root"


@pytest.fixture
def tree(tmp_path: Path, media_root: Path) -> Path:
    """media/ with a few files, and secrets next to it that must never be served."""
    (media_root / "docs").mkdir()
    (media_root / "docs" / "a.txt").write_bytes(b"inside")
    (media_root / "public").mkdir()
    (media_root / "public" / "logo.txt").write_bytes(b"public inside")
    (tmp_path / "secret.txt").write_bytes(SECRET_BYTES)
    (tmp_path / "media_private").mkdir()
    (tmp_path / "media_private" / "x").write_bytes(SECRET_BYTES)
    return media_root


@pytest.fixture
def gateway(tree: Path, make_settings: Callable[..., Settings]) -> MediaGateway:
    return MediaGateway(settings=make_settings(public_prefixes=("public",)))


@pytest.fixture(params=["asgi", "uvicorn"])
def get(
    request: pytest.FixtureRequest, gateway: MediaGateway, serve: Callable[..., str]
) -> Callable[[str | bytes], Reply]:
    """GET an exact request target, in-process or through a real uvicorn."""
    if request.param == "asgi":
        return lambda target: call(gateway, target)
    base = serve(gateway)
    return lambda target: raw_request(
        base, target.encode("latin-1") if isinstance(target, str) else target
    )


TRAVERSALS = [
    "/media/../secret.txt",
    "/media/%2e%2e/secret.txt",
    "/media/..%2fsecret.txt",
    "/media/public/..%2f..%2fsecret.txt",
    "/media/%2E%2E%2Fsecret.txt",
    "/media/public/../../secret.txt",
    "/media/./public/logo.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_is_404(get: Callable[[str | bytes], Reply], target: str) -> None:
    """Item 1: ../, %2e%2e/, ..%2f and double-encoded traversal give 404, no outside byte."""
    reply = get(target)
    assert reply.status == 404
    assert SECRET_BYTES not in reply.body


def test_double_encoding_names_a_file_not_a_traversal(
    gateway: MediaGateway, get: Callable[[str | bytes], Reply]
) -> None:
    """Item 1: %252e%252e%252f decodes once to the literal name "%2e%2e%2fsecret.txt":
    unsigned it is refused like any private path, signed it is simply not found."""
    assert get("/media/%252e%252e%252fsecret.txt").status == 403
    signed = gateway.signer.sign_url("%2e%2e%2fsecret.txt")
    assert signed.startswith("/media/%252e%252e%252fsecret.txt?")
    reply = get(signed)
    assert reply.status == 404
    assert SECRET_BYTES not in reply.body


def test_sibling_prefix_is_404(get: Callable[[str | bytes], Reply]) -> None:
    """Item 2: /media/../media_private/x never reaches the sibling directory."""
    reply = get("/media/../media_private/x")
    assert reply.status == 404
    assert SECRET_BYTES not in reply.body


@pytest.mark.parametrize(
    "target", ["/media/public/logo.txt%00", "/media/%00/x", "/media/public/%00logo.txt"]
)
def test_nul_is_rejected(get: Callable[[str | bytes], Reply], target: str) -> None:
    """Item 3: %00 anywhere gives 400, never a 500 or a traceback."""
    reply = get(target)
    assert reply.status == 400
    assert b"Traceback" not in reply.body


@pytest.mark.parametrize(
    "target",
    [
        "/media/..%5csecret.txt",
        "/media/public%5c..%5c..%5csecret.txt",
        "/media/C:%5csecret.txt",
        "/media/%5c%5chost%5cshare",
    ],
)
def test_backslashes_are_404(get: Callable[[str | bytes], Reply], target: str) -> None:
    """Item 4: backslash forms give 404. On POSIX a backslash is an ordinary byte, so no
    UNC path can ever be opened: there is no code path that connects anywhere."""
    reply = get(target)
    assert reply.status == 404
    assert SECRET_BYTES not in reply.body


@pytest.mark.parametrize(
    "target",
    ["//etc/passwd", "/media//etc/passwd", "/media//secret.txt", "/media/public//logo.txt"],
)
def test_double_slashes(get: Callable[[str | bytes], Reply], target: str) -> None:
    """Item 5: //etc/passwd and /media//etc/passwd give 404 (or reach the app, here absent)."""
    reply = get(target)
    assert reply.status == 404
    assert b"root:" not in reply.body


def test_symlink_out_of_root_is_404(tree: Path, tmp_path: Path, gateway: MediaGateway) -> None:
    """Item 6: a symlink that leaves the root gives 404."""
    (tree / "public" / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (tree / "public" / "escape-dir").symlink_to(tmp_path / "media_private")
    assert call(gateway, "/media/public/escape.txt").status == 404
    assert call(gateway, "/media/public/escape-dir/x").status == 404


def test_symlink_within_root_is_followed(tree: Path, gateway: MediaGateway) -> None:
    """Item 6: documented policy: a symlink that stays inside the root is followed."""
    (tree / "public" / "alias.txt").symlink_to(tree / "public" / "logo.txt")
    reply = call(gateway, "/media/public/alias.txt")
    assert reply.status == 200
    assert reply.body == b"public inside"


@pytest.mark.parametrize("kept", [False, True], ids=["from disk", "kept in memory"])
def test_symlink_swap_race_never_serves_outside(
    tree: Path, tmp_path: Path, gateway: MediaGateway, kept: bool
) -> None:
    """Item 7: a symlink swapped between inside and outside targets during requests is
    never served from outside: the check runs on the opened descriptor, and a file
    kept in memory is served only while the path names the same inode."""
    if kept:
        settle(gateway.files)
    link = tree / "public" / "race.txt"
    inside, outside = tree / "public" / "logo.txt", tmp_path / "secret.txt"
    stop = threading.Event()

    def swap() -> None:
        spare = tree / "public" / "race.tmp"
        while not stop.is_set():
            for target in (inside, outside):
                spare.unlink(missing_ok=True)
                spare.symlink_to(target)
                os.replace(spare, link)

    link.symlink_to(inside)
    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    statuses = set()
    deadline = time.monotonic() + 5
    try:
        for _ in range(400):
            reply = call(gateway, "/media/public/race.txt")
            assert SECRET_BYTES not in reply.body
            statuses.add(reply.status)
            if time.monotonic() > deadline:
                break
    finally:
        stop.set()
        swapper.join(5)
    assert statuses <= {200, 404}


def test_symlink_swapped_after_the_file_was_kept(
    tree: Path, tmp_path: Path, gateway: MediaGateway
) -> None:
    """Item 7: a link served (and kept in memory) while it pointed inside the root, then
    pointed outside, gives 404, never the outside file nor the old bytes."""
    settle(gateway.files)
    link = tree / "public" / "moved.txt"
    link.symlink_to(tree / "public" / "logo.txt")
    assert call(gateway, "/media/public/moved.txt").body == b"public inside"
    assert gateway.files is not None
    assert len(gateway.files) == 1
    spare = tree / "public" / "moved.tmp"
    spare.symlink_to(tmp_path / "secret.txt")
    os.replace(spare, link)
    reply = call(gateway, "/media/public/moved.txt")
    assert reply.status == 404
    assert SECRET_BYTES not in reply.body


def test_unicode_lookalikes_and_normal_forms(tree: Path, gateway: MediaGateway) -> None:
    """Item 8: fullwidth dots and slashes are plain name characters (404, no escape);
    NFC and NFD names are distinct bytes, each answered consistently."""
    nfc = unicodedata.normalize("NFC", "café.txt")
    nfd = unicodedata.normalize("NFD", "café.txt")
    (tree / "public" / nfc).write_bytes(b"nfc")
    assert call(gateway, "/media/public/\uff0e\uff0e\uff0fsecret.txt".encode()).status == 404
    assert call(gateway, gateway.signer.sign_url("\uff0e\uff0e\uff0fsecret.txt")).status == 404
    for _ in range(3):
        assert call(gateway, f"/media/public/{nfc}".encode()).body == b"nfc"
        assert call(gateway, f"/media/public/{nfd}".encode()).status == 404


def test_encoded_slash_is_one_path_for_auth_and_lookup(tree: Path, gateway: MediaGateway) -> None:
    """Item 9: %2F in a segment is decoded once, so the signature and the lookup both see
    docs/a.txt."""
    url = gateway.signer.sign_url("docs/a.txt")
    path, query = url.split("?")
    encoded = path.replace("docs/a.txt", "docs%2Fa.txt")
    assert call(gateway, f"{encoded}?{query}").body == b"inside"
    other = gateway.signer.sign_url("docs/b.txt").split("?")[1]
    assert call(gateway, f"{encoded}?{other}").status == 403


@pytest.mark.parametrize("target", ["/media/docs/", "/media/docs", "/media/", "/media/public/"])
def test_directory_urls_are_404(tree: Path, gateway: MediaGateway, target: str) -> None:
    """Item 10: a directory URL gives 404 with no listing, even with a valid signature."""
    relpath = target.removeprefix("/media/").strip("/") or "x"
    query = gateway.signer.sign_url(relpath).split("?")[1]
    reply = call(gateway, f"{target}?{query}")
    assert reply.status == 404
    assert b"a.txt" not in reply.body


def test_long_paths_fail_fast(get: Callable[[str | bytes], Reply]) -> None:
    """Item 12: an 8 KB path gives 414; 1000 segments give 414, quickly."""
    started = time.monotonic()
    assert get("/media/" + "a" * 8192).status == 414
    assert get("/media/" + "a/" * 1000 + "x").status == 414
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "host", [b"evil.example", b"127.0.0.1:1", b"a" * 300, b"bad host\x01", b""]
)
def test_hostile_host_does_not_change_the_decision(
    tree: Path, gateway: MediaGateway, serve: Callable[..., str], host: bytes
) -> None:
    """Item 13: the Host header never changes the auth decision. Local mode sends no
    Location; the S3 mode builds its Location from configuration only."""
    base = serve(gateway)
    signed = gateway.signer.sign_url("docs/a.txt").encode()
    for target, expected in ((b"/media/docs/a.txt", {403, 400}), (signed, {200, 400})):
        reply = raw_request(
            base, target, headers=b"X-Forwarded-Host: evil\r\nHost: " + host + b"\r\n"
        )
        assert reply.status in expected
        assert "location" not in reply.headers


class TestRelativePath:
    """Unit tests of the resolver itself."""

    def test_decodes_once(self) -> None:
        """%252e stays %2e after one decode: a name, not a dot segment."""
        assert relative_path(b"/media/%252e%252e/x", "/media/") == "%2e%2e/x"

    @pytest.mark.parametrize("path", ["", "/abs", "a/", "a//b", "./a", "a/../b", "a\\b", "..", "."])
    def test_unsafe_is_not_found(self, path: str) -> None:
        """Empty, absolute, dot and backslash paths are refused."""
        with pytest.raises(NotFound):
            validate_relpath(path)

    def test_nul_is_bad_request(self) -> None:
        """NUL is a malformed request, not a missing file."""
        with pytest.raises(BadRequest):
            validate_relpath("a\x00b")

    def test_too_long(self) -> None:
        """Paths over PATH_MAX raise URITooLong."""
        with pytest.raises(URITooLong):
            validate_relpath("a" * 5000)

    def test_invalid_utf8_is_not_found(self) -> None:
        """Bytes that are not UTF-8 cannot name an S3 key, so they are 404 in every mode."""
        with pytest.raises(NotFound):
            relative_path(b"/media/%ff.txt", "/media/")

    def test_fifo_and_directory_are_not_found(self, tree: Path) -> None:
        """Only regular files open; a FIFO does not block the open."""
        os.mkfifo(tree / "pipe")
        root = os.path.realpath(tree)
        for name in ("pipe", "docs"):
            with pytest.raises(NotFound):
                open_regular_file(root, name)


def test_remembered_paths_answer_as_fresh_ones() -> None:
    """relative_path remembers what it accepted; a refusal is made again every time,
    and a path too long to remember is checked the same way."""
    from gateway.paths import REMEMBERED_PATH_BYTES, _relative_path

    for _ in range(2):
        assert relative_path(b"/media/docs/a%20b.txt", "/media/") == "docs/a b.txt"
        for bad, error in ((b"/media/../x", NotFound), (b"/media/a%00b", BadRequest)):
            with pytest.raises(error):
                relative_path(bad, "/media/")
    long = b"/media/" + b"/".join(bytes([ord("a") + i]) * 200 for i in range(6))
    assert len(long) > REMEMBERED_PATH_BYTES
    assert relative_path(long, "/media/") == _relative_path(long, "/media/")
    with pytest.raises(URITooLong):
        relative_path(b"/media/" + b"x" * (3 * 4096 + 1), "/media/")
