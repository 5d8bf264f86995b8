"""Signed URLs: RELIABILITY items 14-18, 20, 21, 60, and stable URLs within a window."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from itsdangerous import Signer

from gateway import MediaGateway, Settings, URLSigner
from gateway.cli import main
from gateway.exceptions import BadSignature, SignatureExpired
from gateway.hmac_sha256 import HmacSha256
from gateway.signing import _payload, _signature_text, rounding_window
from tests.conftest import SECRET
from tests.helpers import call

NOW = 1_800_000_010.0  # just past a window boundary
OLD_KEY, NEW_KEY = "old-key-0123456789abcdef", "new-key-0123456789abcdef"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> URLSigner:
    return URLSigner(secret_keys=[SECRET], ttl=3600, window=300, clock=clock)


@pytest.fixture
def gateway(media_root: Path, make_settings: Callable[..., Settings], clock: Clock) -> MediaGateway:
    (media_root / "a.jpg").write_bytes(b"A")
    (media_root / "b.jpg").write_bytes(b"B")
    (media_root / "a.jpg.bak").write_bytes(b"bak")
    return MediaGateway(settings=make_settings(), clock=clock)


def query(url: str) -> str:
    return urlsplit(url).query


def test_url_shape(signer: URLSigner) -> None:
    """A signed URL is MEDIA_URL + quoted path + exp (+ dl) + sig."""
    url = signer.sign_url("docs/a b#1?.pdf", download=True)
    path, params = url.split("?")
    assert path == "/media/docs/a%20b%231%3F.pdf"
    assert [k for k, _ in parse_qsl(params)] == ["exp", "dl", "sig"]


def test_same_url_within_a_window(signer: URLSigner, clock: Clock) -> None:
    """Two renders within one window give byte-identical URLs; the next window differs."""
    first = signer.sign_url("a.jpg")
    clock.now += 100
    assert signer.sign_url("a.jpg") == first
    clock.now += 300
    assert signer.sign_url("a.jpg") != first


def test_expiry_is_rounded_up(signer: URLSigner) -> None:
    """The expiry is a multiple of the window and at least the TTL away."""
    exp = int(dict(parse_qsl(query(signer.sign_url("a.jpg"))))["exp"])
    assert exp % 300 == 0
    assert NOW + 3600 <= exp < NOW + 3600 + 300


@pytest.mark.parametrize("other", ["/media/b.jpg", "/media/a.jpg.bak"])
def test_signature_is_bound_to_the_path(gateway: MediaGateway, other: str) -> None:
    """Item 14: the signature of /a.jpg fails on /b.jpg and /a.jpg.bak."""
    url = gateway.signer.sign_url("a.jpg")
    assert call(gateway, url).status == 200
    reply = call(gateway, f"{other}?{query(url)}")
    assert reply.status == 403
    assert reply.body == b"Invalid signature\n"


def test_download_option_is_signed(gateway: MediaGateway) -> None:
    """Removing or adding dl breaks the signature: options are covered too."""
    url = gateway.signer.sign_url("a.jpg", download=True)
    assert call(gateway, url.replace("&dl=1", "")).status == 403
    plain = gateway.signer.sign_url("a.jpg")
    assert call(gateway, plain.replace("&sig=", "&dl=1&sig=")).status == 403


def test_other_salt_is_refused(gateway: MediaGateway, clock: Clock) -> None:
    """Item 15: a token made with the same key under another salt gives 403."""
    url = gateway.signer.sign_url("a.jpg")
    exp = int(dict(parse_qsl(query(url)))["exp"])
    foreign = Signer(
        SECRET, salt="django.core.signing", digest_method=hashlib.sha256, key_derivation="hmac"
    )
    sig = foreign.get_signature(_payload("a.jpg", exp, False)).decode()
    assert call(gateway, f"/media/a.jpg?exp={exp}&sig={sig}").status == 403


def test_expired_and_future(gateway: MediaGateway, clock: Clock) -> None:
    """Item 16: one second past the expiry gives 403 saying it expired; a forged future
    expiry gives 403 too."""
    url = gateway.signer.sign_url("a.jpg", expires_in=60)
    exp = int(dict(parse_qsl(query(url)))["exp"])
    clock.now = exp
    assert call(gateway, url).status == 200
    clock.now = exp + 1
    reply = call(gateway, url)
    assert reply.status == 403
    assert reply.body == b"Signature expired\n"
    forged = url.replace(f"exp={exp}", f"exp={exp + 10**6}")
    assert call(gateway, forged).status == 403


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),
        lambda s: s[:10],
        lambda s: "",
        lambda s: "!!!not-base64***",
        lambda s: s + "=",
        lambda s: "\u00e9" + s,
    ],
    ids=["altered", "truncated", "empty", "garbage", "padded", "non-ascii"],
)
def test_bad_signatures(gateway: MediaGateway, mangle: Callable[[str], str]) -> None:
    """Item 17: an altered, truncated, empty or non-base64 signature gives 403, no 500."""
    url = gateway.signer.sign_url("a.jpg")
    base, sig = url.split("&sig=")
    reply = call(gateway, f"{base}&sig={mangle(sig)}".encode())
    assert reply.status == 403


def test_key_rotation(
    media_root: Path, make_settings: Callable[..., Settings], clock: Clock
) -> None:
    """Item 18: old tokens pass while [old, new] are listed, fail once old is removed,
    and new tokens are signed with the newest key."""
    (media_root / "a.jpg").write_bytes(b"A")
    old = MediaGateway(settings=make_settings(secret_keys=(OLD_KEY,)), clock=clock)
    both = MediaGateway(settings=make_settings(secret_keys=(OLD_KEY, NEW_KEY)), clock=clock)
    new = MediaGateway(settings=make_settings(secret_keys=(NEW_KEY,)), clock=clock)
    old_url = old.signer.sign_url("a.jpg")
    assert call(both, old_url).status == 200
    assert call(new, old_url).status == 403
    rotated_url = both.signer.sign_url("a.jpg")
    assert rotated_url == new.signer.sign_url("a.jpg")
    assert call(new, rotated_url).status == 200


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda e, s: f"exp={e}&sig={s}&sig={s}",
        lambda e, s: f"sig={s}&exp={e}",
        lambda e, s: f"exp={e}&exp={e}&sig={s}",
        lambda e, s: f"exp={e}&sig={s}&dl=1",
        lambda e, s: f"exp={e}&sig=",
        lambda e, s: f"sig={s}",
    ],
    ids=["dup-sig", "reordered", "dup-exp", "dl-after-sig", "blank", "no-exp"],
)
def test_duplicated_or_reordered_params(
    gateway: MediaGateway, rewrite: Callable[[str, str], str]
) -> None:
    """Item 20: duplicated or reordered signature parameters give a deterministic 403."""
    params = dict(parse_qsl(query(gateway.signer.sign_url("a.jpg"))))
    target = f"/media/a.jpg?{rewrite(params['exp'], params['sig'])}"
    assert {call(gateway, target).status for _ in range(3)} == {403}


def test_unrelated_params_are_ignored(gateway: MediaGateway) -> None:
    """Extra parameters a CDN or analytics tool appends do not break a valid URL."""
    assert call(gateway, gateway.signer.sign_url("a.jpg") + "&utm_source=mail").status == 200


def test_comparison_uses_compare_digest(signer: URLSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 21: the signature check goes through hmac.compare_digest."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    url = signer.sign_url("a.jpg")
    signer.verify("a.jpg", query(url))
    assert calls
    with pytest.raises(BadSignature):
        signer.verify("b.jpg", query(url))
    assert len(calls) >= 2


def test_verify_errors(signer: URLSigner, clock: Clock) -> None:
    """verify raises SignatureExpired (a Forbidden) after expiry, BadSignature before."""
    url = signer.sign_url("a.jpg", expires_in=1)
    assert signer.verify("a.jpg", query(url)).download is False
    clock.now += 10_000
    with pytest.raises(SignatureExpired):
        signer.verify("a.jpg", query(url))
    with pytest.raises(BadSignature, match="Missing"):
        signer.verify("a.jpg", "")


@pytest.mark.parametrize("path", ["../x", "", "a//b", "a\x00b"])
def test_sign_refuses_unsafe_paths(signer: URLSigner, path: str) -> None:
    """sign_url refuses a path the gateway would never serve."""
    with pytest.raises(ValueError, match="not a valid media path"):
        signer.sign_url(path)


def test_sign_accepts_media_url_prefix(signer: URLSigner) -> None:
    """/media/a.jpg and a.jpg sign the same file."""
    assert signer.sign_url("/media/a.jpg") == signer.sign_url("a.jpg")


def test_sign_rejects_bad_expiry(signer: URLSigner) -> None:
    """expires_in must be a positive integer."""
    with pytest.raises(ValueError, match="expires_in"):
        signer.sign_url("a.jpg", expires_in=0)


@pytest.mark.parametrize("keys", [[SECRET], [OLD_KEY, NEW_KEY]])
def test_fast_path_agrees_with_itsdangerous(keys: list[str], clock: Clock) -> None:
    """The fast verification accepts what itsdangerous's Signer accepts, except other
    spellings of the same bytes, which it refuses."""
    import os

    signer = URLSigner(secret_keys=keys, clock=clock)
    reference = Signer(
        keys, salt="media-gateway.url.v1", digest_method=hashlib.sha256, key_derivation="hmac"
    )
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index in range(200):
        payload = _payload(
            f"dir/{index}/{os.urandom(4).hex()}.bin", 1_900_000_000 + index, bool(index % 2)
        )
        good = reference.get_signature(payload).decode()
        other = reference.get_signature(payload + b"x").decode()
        for sig in (good, other):
            assert signer._verify_fast(payload, sig) == reference.verify_signature(
                payload, sig.encode()
            )
        respelled = good[:-1] + alphabet[alphabet.index(good[-1]) ^ 1]
        assert reference.verify_signature(payload, respelled.encode())
        assert not signer._verify_fast(payload, respelled)


def test_remembered_signatures_still_expire(signer: URLSigner, clock: Clock) -> None:
    """A valid URL is checked once and then remembered; expiry is checked every time,
    and a forged or mangled URL is never remembered."""
    url = signer.sign_url("a.jpg", expires_in=1)
    for _ in range(3):
        assert signer.verify("a.jpg", query(url)).expires > clock.now
    assert signer.remembered().currsize == 1
    assert signer.remembered().hits == 2
    for index in range(50):
        with pytest.raises(BadSignature):
            signer.verify("a.jpg", query(url)[:-1] + "ABCDEFGHIJ"[index % 10])
        with pytest.raises(BadSignature):
            signer.verify(f"forged/{index}.jpg", query(url))
    assert signer.remembered().currsize == 1
    clock.now += 10_000
    with pytest.raises(SignatureExpired):
        signer.verify("a.jpg", query(url))


def test_remembered_signatures_are_bounded(signer: URLSigner) -> None:
    """The cache of valid URLs holds at most GRANT_CACHE_SIZE of them."""
    from gateway.signing import GRANT_CACHE_SIZE

    for index in range(GRANT_CACHE_SIZE + 100):
        url = signer.sign_url(f"many/{index}.jpg")
        signer.verify(f"many/{index}.jpg", query(url))
    assert signer.remembered().currsize == GRANT_CACHE_SIZE


def test_signature_text_is_urlsafe_base64_without_padding() -> None:
    """The text compared with a URL's sig is the HMAC's URL-safe base64, unpadded."""
    for index in range(100):
        key, message = b"k" * index, b"m" * (3 * index)
        expected = base64.urlsafe_b64encode(hmac.digest(key, message, "sha256")).rstrip(b"=")
        assert _signature_text(HmacSha256(key), message) == expected


def test_content_type_override_is_signed(gateway: MediaGateway) -> None:
    """A content-type override is part of the signature: changing or removing it is 403."""
    url = gateway.signer.sign_url("a.jpg", content_type="text/plain; charset=utf-8")
    assert "&ct=text%2Fplain%3B%20charset%3Dutf-8&sig=" in url
    reply = call(gateway, url)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert call(gateway, url.replace("text%2Fplain", "text%2Fhtml")).status == 403
    assert call(gateway, url.replace("&ct=text%2Fplain%3B%20charset%3Dutf-8", "")).status == 403


@pytest.mark.parametrize("bad", ["text/html\r\nSet-Cookie: a=b", "nonsense", "text/plain; x=y", ""])
def test_content_type_override_is_a_mime_type(signer: URLSigner, bad: str) -> None:
    """Only a MIME type (and a charset) may be signed: nothing a header could carry."""
    with pytest.raises(ValueError, match="content_type"):
        signer.sign_url("a.jpg", content_type=bad)


@pytest.mark.parametrize(
    ("window", "lifetime", "expected"),
    [
        (300, 3600, 300),
        (300, 7200, 300),
        (300, 600, 60),
        (300, 100, 10),
        (300, 19, 1),
        (300, 1, 1),
        (60, 3600, 60),
        (5, 40, 4),
    ],
)
def test_rounding_window_is_at_most_a_tenth_of_the_lifetime(
    window: int, lifetime: int, expected: int
) -> None:
    """Short lifetimes get a short window; the default TTL keeps the whole window."""
    assert rounding_window(window, lifetime) == expected


LIFETIMES = [1, 2, 5, 9, 10, 11, 59, 60, 100, 299, 301, 999, 3600, 7200, 86400]


def test_links_die_within_a_tenth_of_their_lifetime(
    media_root: Path, make_settings: Callable[..., Settings], serve: Callable[..., str]
) -> None:
    """Item 60: a link asked for N seconds works at N and is refused by the gateway
    under uvicorn after N + max(1 s, 10%), for short and long N and for signing times
    anywhere in a window (an injected clock, so a day-long link needs no day)."""
    (media_root / "a.jpg").write_bytes(b"A")
    clock = Clock()
    gateway = MediaGateway(settings=make_settings(), clock=clock)
    base = serve(gateway)
    with httpx.Client(base_url=base) as client:
        for signed_at in (NOW - 10, NOW - 9.7, NOW + 0.5, NOW + 137.25, NOW + 289.999):
            for lifetime in LIFETIMES:
                clock.now = signed_at
                url = gateway.signer.sign_url("a.jpg", expires_in=lifetime)
                clock.now = signed_at + lifetime
                assert client.get(url).status_code == 200, (signed_at, lifetime)
                clock.now = signed_at + lifetime + max(1, lifetime / 10)
                refused = client.get(url)
                assert refused.status_code == 403, (signed_at, lifetime)
                assert refused.text == "Signature expired\n"


def test_sign_command_expires_as_asked(
    media_root: Path,
    make_settings: Callable[..., Settings],
    serve: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Item 60: ``media-gateway sign --expires 1`` prints a link that works now and is
    refused by a gateway on the real clock two seconds later, not at the end of the
    five-minute window."""
    (media_root / "a.jpg").write_bytes(b"A")
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("MEDIA_ROOT", str(media_root))
    before = time.time()
    assert main(["sign", "a.jpg", "--expires", "1"]) == 0
    url = capsys.readouterr().out.strip()
    expires = int(dict(parse_qsl(query(url)))["exp"])
    assert expires < before + 1 + 1 and expires < time.time() + 2
    base = serve(MediaGateway(settings=make_settings()))
    with httpx.Client(base_url=base) as client:
        assert client.get(url).status_code == 200
        time.sleep(max(0.0, expires - time.time()) + 0.05)  # under two seconds (above)
        assert client.get(url).status_code == 403
