"""Authorization delegated to the app, in-process and over HTTP: RELIABILITY item 19."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import ConfigError, MediaGateway, Settings
from tests.helpers import call


class AuthApp:
    """A stand-in app: /auth answers by the Cookie; every call is recorded."""

    def __init__(
        self,
        status_by_cookie: dict[str, int] | None = None,
        delay: float = 0.0,
        cache_control: bytes | None = None,
    ) -> None:
        self.status_by_cookie = status_by_cookie or {}
        self.delay = delay
        self.cache_control = cache_control
        # What each app records differs (a dict per call, or the raw headers).
        self.calls: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode(): v.decode("latin-1") for k, v in scope["headers"]}
        self.calls.append(
            {
                "path": scope["path"],
                "method": scope["method"],
                "headers": headers,
                "raw_headers": list(scope["headers"]),
            }
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        status = (
            self.status_by_cookie.get(headers.get("cookie", ""), 403)
            if scope["path"] == "/auth"
            else 200
        )
        if status == -1:
            raise RuntimeError("the app crashed")
        answer_headers = [(b"content-type", b"text/plain")]
        if self.cache_control is not None:
            answer_headers.append((b"cache-control", self.cache_control))
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
        await send({"type": "http.response.body", "body": b"app says"})


@pytest.fixture
def tree(media_root: Path) -> Path:
    (media_root / "docs").mkdir()
    (media_root / "docs" / "caf\u00e9 #1.txt").write_bytes(b"secret doc")
    return media_root


def gateway_for(
    app: ASGIApp, make_settings: Callable[..., Settings], **overrides: Any
) -> MediaGateway:
    return MediaGateway(app, settings=make_settings(auth_delegate="/auth", **overrides))


TARGET = "/media/docs/caf%C3%A9%20%231.txt"


@pytest.mark.parametrize(
    ("cookie", "app_status", "expected"),
    [
        ("ok", 200, 200),
        ("nocontent", 204, 200),
        ("who", 401, 401),
        ("no", 403, 403),
        ("gone", 404, 404),
        ("boom", 500, 502),
        ("moved", 302, 503),
        ("crash", -1, 502),
    ],
)
def test_status_mapping(
    tree: Path, make_settings: Callable[..., Settings], cookie: str, app_status: int, expected: int
) -> None:
    """Item 19: 2xx allows; 401/403 pass on; 404 stays; 5xx and crashes give 502;
    anything else 503: failing closed."""
    app = AuthApp({cookie: app_status})
    reply = call(gateway_for(app, make_settings), TARGET, headers={"cookie": cookie})
    assert reply.status == expected
    if expected == 200:
        assert reply.body == b"secret doc"
        assert reply.headers["cache-control"] == "private, no-cache"
    else:
        assert reply.body != b"secret doc"
        assert b"app says" not in reply.body


def test_timeout_gives_504(tree: Path, make_settings: Callable[..., Settings]) -> None:
    """Item 19: an app that does not answer in time gives 504."""
    app = AuthApp({"slow": 200}, delay=5)
    gateway = gateway_for(app, make_settings, auth_timeout=0.2)
    reply = call(gateway, TARGET, headers={"cookie": "slow"})
    assert reply.status == 504


def test_sub_request_shape(tree: Path, make_settings: Callable[..., Settings]) -> None:
    """The sub-request is a GET to the delegate path with the credentials, X-Media-Path
    and X-Original-URI; range and conditional headers are not forwarded."""
    app = AuthApp({"ok": 200})
    headers = {
        "cookie": "ok",
        "authorization": "Bearer t",
        "range": "bytes=0-1",
        "if-none-match": '"x"',
        "x-media-path": "forged",
    }
    call(gateway_for(app, make_settings), TARGET + "?x=1", method="HEAD", headers=headers)
    (sub,) = app.calls
    assert sub["method"] == "GET"
    assert sub["path"] == "/auth"
    assert sub["headers"]["cookie"] == "ok"
    assert sub["headers"]["authorization"] == "Bearer t"
    assert sub["headers"]["x-media-path"] == "docs/caf%C3%A9%20%231.txt"
    assert sub["headers"]["x-original-uri"] == TARGET + "?x=1"
    assert "range" not in sub["headers"] and "if-none-match" not in sub["headers"]


def test_signed_and_public_skip_the_delegate(
    tree: Path, make_settings: Callable[..., Settings]
) -> None:
    """A valid signature or a public prefix never asks the app."""
    (tree / "pub").mkdir()
    (tree / "pub" / "a.txt").write_bytes(b"pub")
    app = AuthApp()
    gateway = MediaGateway(
        app, settings=make_settings(auth_delegate="/auth", public_prefixes=("pub",))
    )
    assert call(gateway, gateway.signer.sign_url("docs/caf\u00e9 #1.txt")).status == 200
    assert call(gateway, "/media/pub/a.txt").status == 200
    assert app.calls == []


def test_no_cache_by_default(tree: Path, make_settings: Callable[..., Settings]) -> None:
    """Without GATEWAY_AUTH_CACHE_TTL every request asks the app again."""
    app = AuthApp({"ok": 200})
    gateway = gateway_for(app, make_settings)
    for _ in range(3):
        call(gateway, TARGET, headers={"cookie": "ok"})
    assert len(app.calls) == 3


def test_cache_per_credentials_and_path(tree: Path, make_settings: Callable[..., Settings]) -> None:
    """With a cache TTL, a decision is reused for the same credentials and path only."""
    (tree / "docs" / "b.txt").write_bytes(b"b")
    app = AuthApp({"ok": 200, "other": 403}, cache_control=b"private, max-age=60")
    gateway = gateway_for(app, make_settings, auth_cache_ttl=60)
    for _ in range(3):
        assert call(gateway, TARGET, headers={"cookie": "ok"}).status == 200
    assert len(app.calls) == 1
    assert call(gateway, TARGET, headers={"cookie": "other"}).status == 403
    assert call(gateway, "/media/docs/b.txt", headers={"cookie": "ok"}).status == 200
    assert len(app.calls) == 3


def test_cache_key_holds_the_query(tree: Path, make_settings: Callable[..., Settings]) -> None:
    """Item 19: a share link (?share=TOKEN) allowed once does not let the same path
    through without the token, and a refusal without it does not lock the holder out."""

    class ShareApp(AuthApp):
        def __init__(self) -> None:
            super().__init__()

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            headers = dict(scope["headers"])
            self.calls.append(headers)
            ok = headers[b"x-original-uri"].endswith(b"?share=TOKEN")
            await send(
                {
                    "type": "http.response.start",
                    "status": 200 if ok else 403,
                    "headers": [(b"cache-control", b"private, max-age=60")],
                }
            )
            await send({"type": "http.response.body", "body": b""})

    app = ShareApp()
    gateway = gateway_for(app, make_settings, auth_cache_ttl=60)
    cookie = {"cookie": "session=anyone"}
    assert call(gateway, TARGET, headers=cookie).status == 403
    assert call(gateway, TARGET + "?share=TOKEN", headers=cookie).status == 200
    assert call(gateway, TARGET, headers=cookie).status == 403
    assert call(gateway, TARGET + "?share=TOKEN", headers=cookie).status == 200
    assert len(app.calls) == 2


def test_anonymous_decisions_are_not_remembered(
    tree: Path, make_settings: Callable[..., Settings]
) -> None:
    """Without Cookie or Authorization the app is asked every time: its answer may
    depend on anything else it sees."""
    app = AuthApp({"": 200}, cache_control=b"private, max-age=60")
    gateway = gateway_for(app, make_settings, auth_cache_ttl=60)
    for _ in range(3):
        assert call(gateway, TARGET).status == 200
    assert len(app.calls) == 3


@pytest.mark.parametrize(
    ("cache_control", "calls"),
    [
        (b"no-store", 3),
        (b"private, no-cache", 3),
        (b"private, max-age=0", 3),
        (b"private, max-age=soon", 3),
        (b"private, max-age=30", 1),
        (None, 3),
        (b"public", 3),
    ],
)
def test_the_app_says_what_may_be_remembered(
    tree: Path, make_settings: Callable[..., Settings], cache_control: bytes | None, calls: int
) -> None:
    """Only an answer with a max-age is remembered; no-store, no-cache and max-age=0
    never are, nor one without a max-age (the app may decide by more than the key)."""
    app = AuthApp({"ok": 200}, cache_control=cache_control)
    gateway = gateway_for(app, make_settings, auth_cache_ttl=60)
    for _ in range(3):
        assert call(gateway, TARGET, headers={"cookie": "ok"}).status == 200
    assert len(app.calls) == calls


@pytest.mark.parametrize(("vary", "calls"), [(b"Cookie", 1), (b"X-Api-Key", 3), (b"*", 3)])
def test_an_answer_that_varies_by_more_is_not_remembered(
    tree: Path, make_settings: Callable[..., Settings], vary: bytes, calls: int
) -> None:
    """The key holds the target and Cookie/Authorization: an answer that says it
    varies by anything else is asked again each time."""

    class VaryApp(AuthApp):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            self.calls.append(scope["headers"])
            headers = [(b"cache-control", b"private, max-age=60"), (b"vary", vary)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

    app = VaryApp()
    gateway = gateway_for(app, make_settings, auth_cache_ttl=60)
    for _ in range(3):
        assert call(gateway, TARGET, headers={"cookie": "ok"}).status == 200
    assert len(app.calls) == calls


def test_app_max_age_shortens_the_ttl(tree: Path, make_settings: Callable[..., Settings]) -> None:
    """A max-age shorter than GATEWAY_AUTH_CACHE_TTL wins."""
    from gateway.serving.delegate import Delegate

    now = [1000.0]
    app = AuthApp({"ok": 200}, cache_control=b"private, max-age=5")
    gateway = gateway_for(app, make_settings, auth_cache_ttl=60)
    assert gateway.delegate is not None
    delegate = Delegate("/auth", app=app, timeout=5, cache_ttl=60, clock=lambda: now[0])
    gateway.delegate = gateway.authorizer.delegate = delegate
    call(gateway, TARGET, headers={"cookie": "ok"})
    now[0] += 4
    call(gateway, TARGET, headers={"cookie": "ok"})
    assert len(app.calls) == 1
    now[0] += 2
    call(gateway, TARGET, headers={"cookie": "ok"})
    assert len(app.calls) == 2


def test_cache_is_bounded_in_bytes(tree: Path, make_settings: Callable[..., Settings]) -> None:
    """Item 19: the decision cache holds CACHE_BYTES at most, whatever the size of the
    paths, queries and cookies (once 3.9 KB an entry, 20 times its stated bound)."""
    import tracemalloc

    from gateway.serving import delegate as delegate_module

    app = AuthApp()
    gateway = gateway_for(app, make_settings, auth_cache_ttl=60)
    assert gateway.delegate is not None
    long_cookie = "c=" + "x" * 4000
    scope_headers = [(b"cookie", long_cookie.encode())]
    key = gateway.delegate._cache_key(scope_headers, b"/media/" + b"p" * 4000 + b"?q=1")
    assert key is not None and len(key) == 32
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(delegate_module.CACHE_ENTRIES + 500):
        key = gateway.delegate._cache_key(scope_headers, b"/media/%d/" % n + b"p" * 4000)
        assert key is not None
        gateway.delegate._remember(key, 200, 60)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(gateway.delegate._cache) == delegate_module.CACHE_ENTRIES
    assert used <= delegate_module.CACHE_BYTES, used


@pytest.mark.parametrize(
    "forged",
    [
        [(b"x-media-path", b"docs/other")],
        [(b"x_media_path", b"docs/other")],
        [(b"X_Media_Path", b"docs/other")],
        [(b"x-original_uri", b"/media/docs/other")],
        [(b"x-media-path", b"a"), (b"x_media-path", b"b"), (b"X-ORIGINAL-URI", b"/x")],
    ],
)
def test_client_copies_of_gateway_headers_are_dropped(
    tree: Path, make_settings: Callable[..., Settings], forged: list[tuple[bytes, bytes]]
) -> None:
    """Item 19: whatever the spelling (dashes, underscores, case, repeats), the app sees
    exactly one X-Media-Path and one X-Original-URI, the gateway's."""
    app = AuthApp({"ok": 200})
    call(gateway_for(app, make_settings), TARGET, headers=[(b"cookie", b"ok"), *forged])
    (sub,) = app.calls
    names = [k.lower().replace(b"_", b"-") for k, _ in sub["raw_headers"]]
    assert names.count(b"x-media-path") == 1
    assert names.count(b"x-original-uri") == 1
    assert sub["headers"]["x-media-path"] == "docs/caf%C3%A9%20%231.txt"
    assert sub["headers"]["x-original-uri"] == TARGET


def test_http_delegate(
    tree: Path, make_settings: Callable[..., Settings], serve: Callable[..., str]
) -> None:
    """An http:// delegate gets the same check over the network (loopback here)."""
    app = AuthApp({"ok": 200, "no": 403})
    base = serve(app)
    gateway = MediaGateway(settings=make_settings(auth_delegate=f"{base}/auth"))
    with httpx.Client(base_url=serve(gateway)) as client:
        assert client.get(TARGET, headers={"cookie": "ok"}).content == b"secret doc"
        assert client.get(TARGET, headers={"cookie": "no"}).status_code == 403
    assert app.calls[0]["headers"]["x-media-path"] == "docs/caf%C3%A9%20%231.txt"


def test_http_delegate_unreachable(tree: Path, make_settings: Callable[..., Settings]) -> None:
    """An unreachable delegate fails closed with 502."""
    from tests.conftest import free_port

    gateway = MediaGateway(
        settings=make_settings(auth_delegate=f"http://127.0.0.1:{free_port()}/auth")
    )
    assert call(gateway, TARGET, headers={"cookie": "ok"}).status == 502


@pytest.mark.parametrize(
    ("value", "message"),
    [("media-auth", "expected a path"), ("/media/auth", "must not lie under MEDIA_URL")],
)
def test_bad_delegate_settings(
    make_settings: Callable[..., Settings], value: str, message: str
) -> None:
    """A delegate that is not a path or URL, or lies under MEDIA_URL, is refused."""
    with pytest.raises(ConfigError, match=message):
        make_settings(auth_delegate=value)


def test_path_delegate_needs_an_app(make_settings: Callable[..., Settings]) -> None:
    """A standalone gateway cannot ask an in-process app."""
    with pytest.raises(ConfigError, match="needs a wrapped app"):
        MediaGateway(settings=make_settings(auth_delegate="/auth"))


async def api_key_delegate(scope: Scope, receive: Receive, send: Send) -> None:
    """An app whose delegate decides by an API key header (or, alike, the client's IP,
    an SSO proxy's X-Forwarded-User, a client certificate) and sends no Cache-Control,
    as most views do."""
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    status = 204 if headers.get(b"x-api-key") == b"alice-key" else 403
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("first", ["alice", "mallory"])
def test_a_trivial_cookie_shares_delegate_decisions(
    media_root: Path, make_settings: Callable[..., Settings], serve: Callable[..., str], first: str
) -> None:
    """GATEWAY_AUTH_CACHE_TTL once cached every decision the app did not refuse to
    have cached: Alice (API key, plus a non-secret cookie such as lang=en) allowed
    once, anybody with the same trivial cookie and no key got her file for the TTL.
    Now only answers the app marks with a max-age are remembered (second review)."""
    (media_root / "docs").mkdir()
    (media_root / "docs" / "alice.txt").write_bytes(b"alice's file")
    gateway = MediaGateway(
        api_key_delegate,
        settings=make_settings(auth_delegate="/auth", auth_cache_ttl=300),
    )
    base = serve(gateway)
    url = base + "/media/docs/alice.txt"
    if first == "alice":
        alice = httpx.get(url, headers={"cookie": "lang=en", "x-api-key": "alice-key"})
        assert alice.status_code == 200
        mallory = httpx.get(url, headers={"cookie": "lang=en"})
        assert mallory.status_code == 403, mallory.content
    else:
        assert httpx.get(url, headers={"cookie": "lang=en"}).status_code == 403
        alice = httpx.get(url, headers={"cookie": "lang=en", "x-api-key": "alice-key"})
        assert alice.status_code == 200
