"""The access log and the redaction of signatures and credentials in every log.

The subprocess tests run ``media-gateway serve`` as a user would, in each delivery mode,
against the real rclone S3 server, and read everything it printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway import MediaGateway, Settings
from gateway.redact import REDACTED, RedactingFilter, redact_query, redact_text
from gateway.serving.access_log import AccessLog, AccessLogHandler, access_logger
from tests.conftest import SECRET, free_port
from tests.helpers import call, http_scope, stop, wait_until_serving

# Common Log Format plus the microseconds taken.
LINE = re.compile(
    r'^(\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "(\S+) (\S+) HTTP/1\.1" '
    r"(\d{3}) (\d+) \d+$",
    re.MULTILINE,
)
# A pass-through request carrying every sensitive name, in odd spellings.
NOISY_QUERY = (
    "X-Amz-Signature=noisy-signature-1&x-amz-credential=noisy-credential-2"
    "&X%2DAmz%2DSecurity%2DToken=noisy-token-3&%73ig=noisy-sig-4&SIG=noisy-sig-5"
    "&next=%2Fmedia%2Fa.txt%3Fsig%3Dnoisy-nested-6&page=2"
)
NOISY_VALUES = [f"noisy-{word}" for word in ("signature-1", "credential-2", "token-3")] + [
    "noisy-sig-4",
    "noisy-sig-5",
    "noisy-nested-6",
]

APP_MODULE = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from the app"})


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"from the app"]
"""


def test_redact_query_names_case_and_encoding() -> None:
    """Item 58: every spelling of the four names loses its value; the rest stays."""
    query = "exp=1&" + NOISY_QUERY
    redacted = redact_query(query)
    assert redacted.startswith("exp=1&X-Amz-Signature=[REDACTED]&x-amz-credential=[REDACTED]")
    assert "page=2" in redacted
    for value in NOISY_VALUES:
        assert value not in redacted
    assert redact_query("a=1&b=2") == "a=1&b=2"


def test_redact_text_in_messages_and_s3_errors() -> None:
    """Item 58: URLs inside free text and S3's echo of a signature are redacted."""
    text = (
        "GET /media/a.jpg?exp=1&sig=abc HTTP/1.1 to https://s3.test/b/k?X-Amz-Credential="
        "AKIA%2F2026&X-Amz-Signature=deadbeef <SignatureProvided>ff00</SignatureProvided>"
        "<StringToSign>AWS4-HMAC-SHA256 truncat"
    )
    redacted = redact_text(text)
    for secret in ("abc", "AKIA", "deadbeef", "ff00", "AWS4-HMAC"):
        assert secret not in redacted
    assert "exp=1" in redacted


def test_redacting_filter_keeps_argument_shapes() -> None:
    """Item 58: uvicorn's access record keeps its tuple, gunicorn's its mapping."""
    uvicorn_record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/media/a?sig=abc", "1.1", 200),
        None,
    )
    assert RedactingFilter().filter(uvicorn_record)
    assert (
        uvicorn_record.getMessage() == f'127.0.0.1:1 - "GET /media/a?sig={REDACTED} HTTP/1.1" 200'
    )
    gunicorn_record = logging.LogRecord(
        "gunicorn.access", logging.INFO, __file__, 1, "%(r)s %(q)s", None, None
    )
    gunicorn_record.args = {"r": "GET /m?sig=abc HTTP/1.1", "q": "sig=abc"}
    RedactingFilter().filter(gunicorn_record)
    assert "abc" not in gunicorn_record.getMessage()


@pytest.fixture
def gateway(media_root: Path, make_settings: Callable[..., Settings]) -> MediaGateway:
    (media_root / "a.txt").write_bytes(b"12345")
    return MediaGateway(settings=make_settings(live_path="/-/live"))


def test_line_for_every_request(gateway: MediaGateway, caplog: pytest.LogCaptureFixture) -> None:
    """Item 58: media, pass-through and operations requests each get one line, in the
    Common Log Format, with the signature redacted."""
    url = gateway.signer.sign_url("a.txt")
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        call(gateway, url)
        call(gateway, "/media/nope.txt")
        call(gateway, "/other?" + NOISY_QUERY)
        call(gateway, "/-/live")
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 4, lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m[2], m[4], m[5]) for m in parsed if m] == [
        ("GET", "200", "5"),
        ("GET", "403", str(len(call(gateway, "/media/nope.txt").body))),
        ("GET", "404", str(len("Not Found\n"))),
        ("GET", "200", str(len('{"live": true}'))),
    ]
    assert parsed[0] and parsed[0][3] == url.split("sig=")[0] + f"sig={REDACTED}"
    assert parse_qs(urlsplit(url).query)["sig"][0] not in caplog.text
    for value in NOISY_VALUES:
        assert value not in caplog.text


def test_line_when_the_app_raises(
    media_root: Path, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """An app that raises before answering still gets its line, with the 500 the server
    sends."""

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    gateway = MediaGateway(broken, settings=make_settings())
    with caplog.at_level(logging.INFO, logger="gateway.access"), pytest.raises(RuntimeError):
        call(gateway, "/page?sig=abc")
    line = next(r.getMessage() for r in caplog.records if r.name == "gateway.access")
    assert f'"GET /page?sig={REDACTED} HTTP/1.1" 500 0 ' in line


def test_gateway_errors_are_redacted(
    media_root: Path, make_settings: Callable[..., Settings]
) -> None:
    """Item 58: the gateway's own warnings and errors, tracebacks included, never carry a
    signature or a presigned URL's credential."""
    MediaGateway(settings=make_settings())  # installs the filters
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("gateway.delegate")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("fetching /media/a.jpg?exp=1&sig=secret-sig failed")
        except ValueError:
            logger.exception("authorization check raised for %s", "/media/a?sig=secret-arg")
        logging.getLogger("gateway.proxy").addHandler(handler)
        logging.getLogger("gateway.proxy").error(
            "S3 answered %s: %s", 403, "<SignatureProvided>secret-s3</SignatureProvided>"
        )
    finally:
        logger.removeHandler(handler)
        logging.getLogger("gateway.proxy").removeHandler(handler)
    text = stream.getvalue()
    assert "ValueError" in text and "S3 answered 403" in text
    for secret in ("secret-sig", "secret-arg", "secret-s3"):
        assert secret not in text


def test_every_logger_of_the_package_is_guarded(
    media_root: Path, make_settings: Callable[..., Settings]
) -> None:
    """Item 58, and an attack that once worked: gateway.uploads and gateway.health were
    not guarded (a filter sees only its own logger's records), so S3's error document for
    a refused write, which quotes the canonical request with its credential and session
    token, reached the log unredacted. Every logger the package names is guarded now."""
    import re

    import gateway
    from gateway.redact import OWN_LOGGERS

    package = Path(gateway.__file__).parent
    named = {
        name
        for path in package.rglob("*.py")
        for name in re.findall(r'getLogger\("([^"]+)"\)', path.read_text())
    }
    assert "gateway.uploads" in named
    # gateway.access redacts as it builds each line (a filter would cost every request).
    assert named - {"gateway.access"} <= set(OWN_LOGGERS), named - set(OWN_LOGGERS)

    MediaGateway(settings=make_settings())  # installs the filters
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    echo = (
        "<CanonicalRequest>PUT /b/k X-Amz-Credential=AKIAXXXX%2F20261201"
        "&amp;X-Amz-Security-Token=secret-token</CanonicalRequest>"
    )
    for name in sorted(named - {"gateway.access"}):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        try:
            logger.error("S3 answered %s to %s: %s", 403, "PUT", echo)
        finally:
            logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("S3 answered 403") == len(named - {"gateway.access"})
    assert "secret-token" not in text and "AKIAXXXX" not in text


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, True), ("", True), ("true", True), ("off", False)]
)
def test_access_log_setting(raw: str | None, expected: bool) -> None:
    """GATEWAY_ACCESS_LOG: on unless set to false; empty means the default."""
    from gateway import Settings

    environ = {"GATEWAY_SECRET_KEY": SECRET}
    if raw is not None:
        environ["GATEWAY_ACCESS_LOG"] = raw
    assert Settings.from_env(environ, env_file=None).access_log is expected


def test_access_log_setting_invalid() -> None:
    """A value that is not a boolean names the variable."""
    from gateway import ConfigError, Settings

    with pytest.raises(ConfigError, match="GATEWAY_ACCESS_LOG"):
        Settings.from_env({"GATEWAY_SECRET_KEY": SECRET, "GATEWAY_ACCESS_LOG": "maybe"})


def test_access_log_off(
    media_root: Path, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """GATEWAY_ACCESS_LOG=false: no access log object, no line."""
    (media_root / "a.txt").write_bytes(b"1")
    gateway = MediaGateway(settings=make_settings(access_log=False))
    assert gateway.access_log is None
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        call(gateway, gateway.signer.sign_url("a.txt"))
    assert not [r for r in caplog.records if r.name == "gateway.access"]


def test_buffered_handler_writes_the_same_line(
    gateway: MediaGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buffered handler, alone on gateway.access, gets the line without a record;
    it writes it when its buffer fills and when it is closed."""
    stream = io.StringIO()
    handler = AccessLogHandler(stream, buffer_lines=10_000_000, flush_interval=0)
    monkeypatch.setattr(access_logger, "handlers", [handler])
    monkeypatch.setattr(access_logger, "propagate", False)
    monkeypatch.setattr(access_logger, "level", logging.INFO)
    # Private in the standard library (and so absent from typeshed): loggers cache their
    # level, and the patched level must be seen at once.
    access_logger.manager._clear_cache()  # type: ignore[attr-defined]
    gateway.access_log = AccessLog()
    url = gateway.signer.sign_url("a.txt")
    call(gateway, url)
    call(gateway, url)
    assert gateway.access_log._direct is handler
    assert stream.getvalue() == ""  # buffered
    handler.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and all(LINE.match(line) for line in lines)
    assert f"sig={REDACTED}" in lines[0]
    small = io.StringIO()
    handler = AccessLogHandler(small, buffer_lines=1)
    monkeypatch.setattr(access_logger, "handlers", [handler])
    gateway.access_log = AccessLog()
    call(gateway, url)
    assert LINE.match(small.getvalue().strip())
    handler.close()


def test_buffered_handler_writes_whole_lines_atomically() -> None:
    """Several workers share stdout: each write the handler makes holds whole lines and
    at most PIPE_BUF bytes, which a pipe writes atomically, so lines never mix."""
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with reader, writer, os.fdopen(writer.fileno(), "w", closefd=False) as stream:
        handler = AccessLogHandler(stream, buffer_lines=10_000, flush_interval=0)
        lines = [f"line {n:04d} " + "x" * (n % 300) for n in range(300)]
        for line in lines:
            handler.emit(logging.makeLogRecord({"msg": line}))
        handler.flush()
        reader.settimeout(5)
        received, messages = b"", 0
        while received.count(b"\n") < len(lines):
            message = reader.recv(65536)  # one write() each
            assert message.endswith(b"\n") and len(message) <= select.PIPE_BUF
            received += message
            messages += 1
        handler.close()
    assert received.decode().splitlines() == lines
    assert messages > 1


def test_escapes_quotes_in_the_target(
    gateway: MediaGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A quote or a control byte in the target cannot forge a field or a line."""
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        call(gateway, b'/x"y\x01')
    line = next(r.getMessage() for r in caplog.records if r.name == "gateway.access")
    assert '/x\\x22y\\x01 HTTP/1.1"' in line


# --- media-gateway serve, as shipped ------------------------------------------------

AMZ = ("x-amz-signature", "x-amz-credential", "x-amz-security-token")
MODES: dict[str, dict[str, Any]] = {
    "local": {},
    "redirect": {"s3": True},
    "proxy": {"s3": True, "GATEWAY_S3_DELIVERY": "proxy"},
    "hybrid": {"s3": True, "GATEWAY_LOCAL_FALLBACK": "true"},
    "wsgi": {"interface": "wsgi"},
    "two-workers": {"workers": "2"},
    "proxy-bad-credentials": {"s3": True, "GATEWAY_S3_DELIVERY": "proxy", "bad": True},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_serve_logs_no_secret(mode: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Item 58: ``media-gateway serve`` with default settings, in every mode: after signed
    requests its stdout and stderr hold an access line per request (written out when
    SIGTERM stops it, by every worker) and no ``sig``, ``X-Amz-Signature``,
    ``X-Amz-Credential`` or ``X-Amz-Security-Token`` value, nor the secret key."""
    options = dict(MODES[mode])
    root = tmp_path / "media"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "local.txt").write_bytes(b"on disk")
    (tmp_path / "passapp.py").write_text(APP_MODULE)
    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "MEDIA_ROOT": str(root)}
    env["GATEWAY_LIVE_PATH"] = "/-/live"
    secrets = [SECRET]
    if options.pop("s3", False):
        s3 = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        with contextlib.closing(s3.client()) as client:
            client.put_object(Bucket=bucket, Key="media/docs/remote.txt", Body=b"in S3")
        env.update(s3.env(bucket))
        secrets += [s3.secret_key, s3.access_key]
        if options.pop("bad", False):
            env["AWS_SECRET_ACCESS_KEY"] = "wrong-" + s3.secret_key
            secrets.append(env["AWS_SECRET_ACCESS_KEY"])
        elif options.get("GATEWAY_S3_DELIVERY") != "proxy":
            # Redirects carry it in X-Amz-Security-Token; no request reaches S3 here.
            env["AWS_SESSION_TOKEN"] = "session-token-" + "t" * 40
            secrets.append(env["AWS_SESSION_TOKEN"])
    interface = options.pop("interface", "asgi")
    workers = options.pop("workers", "1")
    env.update(options)
    port = free_port()
    app = "passapp:wsgi" if interface == "wsgi" else "passapp:app"
    command = [str(Path(sys.executable).parent / "media-gateway"), "serve", "--port", str(port)]
    command += ["--app", app, "--interface", interface, "--workers", workers]
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=stdout, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    sent = 0
    presigned: list[str] = []
    try:
        wait_until_serving(base + "/-/live", proc)
        sent += 1
        signer_env = {k: v for k, v in env.items() if k.startswith(("GATEWAY_", "MEDIA_"))}
        urls = _signed(signer_env, ["docs/local.txt", "docs/remote.txt", "docs/local.txt"])
        with httpx.Client(base_url=base) as client:
            for url in urls:
                reply = client.get(url)
                sent += 1
                location = reply.headers.get("location", "")
                for name, values in parse_qs(urlsplit(location).query).items():
                    if name.lower() in AMZ:
                        presigned += values
                secrets.append(parse_qs(urlsplit(url).query)["sig"][0])
            assert client.get("/other?" + NOISY_QUERY).content == b"from the app"
            assert client.get("/media/docs/local.txt").status_code == 403
            sent += 2
        # Redirects carried a signature, a credential and the session token.
        assert len(presigned) == {"redirect": 9, "hybrid": 3}.get(mode, 0)
    finally:
        stop(proc, sig=signal.SIGTERM)  # what a process manager sends
    output = out.read_text() + err.read_text()
    lines = LINE.findall(output)
    assert len(lines) == sent, output
    assert {line[2].split("?")[0] for line in lines} >= {
        "/-/live",
        "/other",
        "/media/docs/local.txt",
    }
    for secret in [*secrets, *presigned, *NOISY_VALUES]:
        assert secret not in output, (secret, output)
    assert "sig=" + REDACTED in output
    if mode == "proxy-bad-credentials":
        assert "S3 answered 403" in output, output


def _signed(env: dict[str, str], paths: list[str]) -> list[str]:
    from gateway import Settings, URLSigner

    signer = URLSigner.from_settings(Settings.from_env(env, env_file=None))
    return [signer.sign_url(path) for path in paths]


def test_log_config_takes_the_lines_elsewhere(tmp_path: Path) -> None:
    """``serve --log-config``: the lines are ordinary records of ``gateway.access``, which
    the operator's logging configuration formats and sends where it says."""
    root = tmp_path / "media"
    root.mkdir()
    lines = tmp_path / "access.log"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tagged": {"format": "ACCESS %(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(lines), "formatter": "tagged"}
        },
        "loggers": {"gateway.access": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    (tmp_path / "log.json").write_text(json.dumps(config))
    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "MEDIA_ROOT": str(root)}
    env["GATEWAY_LIVE_PATH"] = "/-/live"
    port = free_port()
    command = [str(Path(sys.executable).parent / "media-gateway"), "serve", "--port", str(port)]
    command += ["--log-config", "log.json"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/-/live", proc)
        httpx.get(f"http://127.0.0.1:{port}/media/x?sig=abc")
    finally:
        stop(proc, sig=signal.SIGTERM)
    text = lines.read_text()
    assert re.search(
        rf'^ACCESS INFO .*"GET /media/x\?sig={re.escape(REDACTED)} HTTP/1.1" 403 ', text, re.M
    )
    assert "abc" not in text


def test_no_access_log_flag(tmp_path: Path) -> None:
    """``serve --no-access-log``: no line at all."""
    root = tmp_path / "media"
    root.mkdir()
    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "MEDIA_ROOT": str(root)}
    env["GATEWAY_LIVE_PATH"] = "/-/live"
    port = free_port()
    command = [str(Path(sys.executable).parent / "media-gateway"), "serve", "--port", str(port)]
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, "--no-access-log"], cwd=tmp_path, env=env, stdout=sink, stderr=sink
        )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/-/live", proc)
        httpx.get(f"http://127.0.0.1:{port}/media/x?sig=abc")
    finally:
        stop(proc)
    text = out.read_text()
    assert not LINE.findall(text), text
    assert "abc" not in text


OWN_SERVER_APP = """
from gateway import MediaGateway
from gateway.wsgi import MediaGatewayWSGI

app = MediaGateway()


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"from the app"]


wsgi = MediaGatewayWSGI(hello)
"""
OWN_SERVERS = {
    # uvicorn's access log is on by default; gunicorn's is off until asked for.
    "uvicorn": ["uvicorn", "ownapp:app"],
    "gunicorn": ["gunicorn", "ownapp:wsgi", "--access-logfile", "-", "--workers", "1"],
}


@pytest.mark.parametrize("server", list(OWN_SERVERS))
def test_own_server_command_redacts_its_access_log(server: str, tmp_path: Path) -> None:
    """Item 58: the gateway run under the user's own uvicorn (access log on by default)
    or gunicorn (``--access-logfile -``): the server's own access line names the request
    with the signature redacted."""
    root = tmp_path / "media"
    root.mkdir()
    (root / "a.txt").write_bytes(b"hi")
    (tmp_path / "ownapp.py").write_text(OWN_SERVER_APP)
    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "MEDIA_ROOT": str(root)}
    port = free_port()
    binary, *arguments = OWN_SERVERS[server]
    command = [str(Path(sys.executable).parent / binary), *arguments]
    if server == "uvicorn":
        command += ["--port", str(port)]
    else:
        command += ["--bind", f"127.0.0.1:{port}"]
    out = tmp_path / "out.txt"
    url = _signed({"GATEWAY_SECRET_KEY": SECRET, "MEDIA_ROOT": str(root)}, ["a.txt"])[0]
    with out.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=sink, stderr=sink)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/", proc)
        assert httpx.get(f"http://127.0.0.1:{port}{url}").content == b"hi"
        httpx.get(f"http://127.0.0.1:{port}/other?" + NOISY_QUERY)
    finally:
        stop(proc, sig=signal.SIGTERM)
    text = out.read_text()
    assert f"/media/a.txt?exp={url.split('exp=')[1].split('&')[0]}&sig={REDACTED}" in text, text
    assert parse_qs(urlsplit(url).query)["sig"][0] not in text
    for value in NOISY_VALUES:
        assert value not in text


def test_remembered_redirects_are_logged_too(
    media_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redirect mode answers a repeated request from the second's memory, without
    watching its sends: it still gets its line, status and size right, signature
    redacted."""
    from tests.serving.test_s3 import offline_settings

    now = 1_800_000_000.5
    gateway = MediaGateway(settings=offline_settings(media_root), clock=lambda: now)
    url = gateway.signer.sign_url("docs/a.bin")
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        replies = [call(gateway, url) for _ in range(3)]
    assert [r.status for r in replies] == [302, 302, 302]
    assert gateway._recent is not None and gateway._recent.hits == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 3
    for line in lines:
        assert '" 302 0 ' in line
        assert "sig=[REDACTED]" in line
    assert parse_qs(urlsplit(url).query)["sig"][0] not in caplog.text


@pytest.fixture
def served_a_txt(
    media_root: Path, make_settings: Callable[..., Settings], serve: Callable[..., str]
) -> tuple[MediaGateway, str]:
    (media_root / "a.txt").write_bytes(b"private")
    gateway = MediaGateway(settings=make_settings())
    return gateway, serve(gateway)


@pytest.mark.parametrize("separator", ["&amp;", ";"])
def test_html_escaped_link_puts_a_live_signature_in_the_access_log(
    served_a_txt: tuple[MediaGateway, str], caplog: pytest.LogCaptureFixture, separator: str
) -> None:
    """Item 58: a signed link HTML-escaped once too often (a Django text e-mail template
    autoescapes: `?exp=...&amp;sig=...`) is refused, and its signature, valid for the
    unescaped link, was once written to the default access log in clear (third review)."""
    gateway, base = served_a_txt
    url = gateway.signer.sign_url("a.txt")
    sig = url.split("sig=")[1]
    assert httpx.get(base + url).content == b"private"  # the signature is live
    mangled = url.replace("&sig=", f"{separator}sig=")
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        assert httpx.get(base + mangled).status_code == 403
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert lines
    assert sig not in "\n".join(lines)


def test_client_address_cannot_forge_access_log_fields(
    caplog: pytest.LogCaptureFixture,
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
) -> None:
    """Behind `--forwarded-allow-ips '*'` (README: containers), the first X-Forwarded-For
    entry is the client's own text; the access line once printed it unescaped, so a client
    wrote a whole fake Common Log Format prefix (quotes, status, size) (third review)."""
    gateway = MediaGateway(settings=make_settings())
    base = serve(gateway, proxy_headers=True, forwarded_allow_ips="*")
    forged = '6.6.6.6 - - [01/Jan/2026:00:00:00 +0000] "GET /media/x HTTP/1.1" 200 1 1'
    short = '6.6.6.6 "x'  # short enough to be remembered: escaped from memory too
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        for host in (forged, forged, short, short):
            httpx.get(base + "/media/a.txt", headers={"X-Forwarded-For": host})
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 4
    for line in lines:
        assert line.count('"') == 2, line  # the request line's two quotes only
    assert lines[2].startswith("6.6.6.6\\x20\\x22x "), lines[2]
    assert lines[3].startswith("6.6.6.6\\x20\\x22x "), lines[3]


WSGI_MODULE = """
import logging
from gateway.wsgi import MediaGatewayWSGI

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]

application = MediaGatewayWSGI(app)
handler = logging.FileHandler(%r)
logging.getLogger("gateway.access").addHandler(handler)
logging.getLogger("gateway.access").setLevel(logging.INFO)
"""


def raw_get(port: int, target: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_absolute_form_requests_are_logged_with_their_own_path(
    tmp_path: Path, media_root: Path
) -> None:
    """Under your own gunicorn, an absolute-form target (`GET http://host/media/...`)
    once left the scope without raw_path, and the access log, which remembers targets by
    (raw_path, query), logged every such request with the first one's path: a client
    could probe any path while the log showed an innocent one (third review)."""
    (media_root / "a.txt").write_bytes(b"private")
    log = tmp_path / "access.log"
    (tmp_path / "wsgi_probe.py").write_text(WSGI_MODULE % str(log))
    port = free_port()
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{repo}",
        "GATEWAY_SECRET_KEY": SECRET,
        "MEDIA_ROOT": str(media_root),
        "GATEWAY_READY_PATH": "/-/ready",
    }
    proc = subprocess.Popen(
        [
            Path(sys.executable).with_name("gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "wsgi_probe:application",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/-/ready", proc)
        raw_get(port, b"http://x/media/a.txt")
        answer = raw_get(port, b"http://x/media/..%2f..%2fetc/passwd")
        assert answer.startswith(b"HTTP/1.1 404"), answer[:100]
        time.sleep(0.5)
    finally:
        stop(proc)
    lines = log.read_text().splitlines()
    media = [line for line in lines if "/media/" in line]
    assert len(media) == 2, lines
    assert "etc" in media[1], media


def test_status_and_size_of_every_kind_of_answer(
    gateway: MediaGateway, media_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway's own answers are logged with the status and body size it sent,
    without watching the sends: a file from memory, a 304, a range, an error (HEAD: no
    body), a streamed file; and a 500 when no answer was sent."""
    import os

    (media_root / "big.bin").write_bytes(os.urandom(300_000))
    small, big = gateway.signer.sign_url("a.txt"), gateway.signer.sign_url("big.bin")
    etag = call(gateway, small).headers["etag"]
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        call(gateway, small)
        call(gateway, small, headers={"if-none-match": etag})
        call(gateway, small, headers={"range": "bytes=1-2"})
        call(gateway, "/media/a.txt", method="HEAD")
        call(gateway, "/media/a.txt", method="POST")
        assert len(call(gateway, big).body) == 300_000
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    found = [(m[2], m[4], m[5]) for m in map(LINE.match, lines) if m]
    assert found[-6:] == [
        ("GET", "200", "5"),
        ("GET", "304", "0"),
        ("GET", "206", "2"),
        ("HEAD", "403", "0"),
        ("POST", "405", str(len("Method not allowed\n"))),
        ("GET", "200", "300000"),
    ], lines


def test_remembered_redirect_lines_follow_the_logger_at_once(
    media_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The line of a remembered redirect reads logging's own cache of the level: a
    setLevel() or a disabled logger takes effect with the next request."""
    from tests.serving.test_s3 import offline_settings

    gateway = MediaGateway(settings=offline_settings(media_root), clock=lambda: 1.8e9)
    url = gateway.signer.sign_url("docs/a.bin")
    logger = logging.getLogger("gateway.access")

    def lines() -> int:
        return sum(1 for r in caplog.records if r.name == "gateway.access")

    with caplog.at_level(logging.INFO, logger="gateway.access"):
        assert [call(gateway, url).status for _ in range(2)] == [302, 302]
        assert lines() == 2
        logger.setLevel(logging.WARNING)
        call(gateway, url)
        assert lines() == 2
        logger.setLevel(logging.INFO)
        call(gateway, url)
        assert lines() == 3
        logger.disabled = True
        try:
            call(gateway, url)
        finally:
            logger.disabled = False
        assert lines() == 3
        call(gateway, url)
        assert lines() == 4
    assert gateway._recent is not None and gateway._recent.hits == 5


def test_remembered_file_lines_log_an_unsent_body_as_a_fresh_answer_does(
    media_root: Path, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """Attack: the client goes away, so the server's send() of the body fails. A fresh
    gateway logs that request as the 500 the server answers (nothing in its watch); a
    remembered file answer counts itself sent once its start message went out, and logs
    "200" and the whole size for a body that never left."""
    import asyncio

    from tests.helpers import settle

    (media_root / "public").mkdir()
    (media_root / "public" / "p.txt").write_bytes(b"public file")
    gateway = MediaGateway(settings=make_settings(public_prefixes=("public",)))
    assert gateway.files is not None
    settle(gateway.files)
    assert call(gateway, "/media/public/p.txt").status == 200  # kept and remembered
    scope = http_scope("/media/public/p.txt")

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client gone")

    def status_of_unsent(app: MediaGateway) -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gateway.access"), pytest.raises(OSError):
            asyncio.run(app(scope, receive, send))
        line = next(r.getMessage() for r in caplog.records if r.name == "gateway.access")
        return line.split('" ', 1)[1].rsplit(" ", 1)[0]

    fresh = MediaGateway(settings=make_settings(public_prefixes=("public",)))
    assert fresh.files is not None
    settle(fresh.files)
    assert status_of_unsent(fresh) == "500 0"
    assert status_of_unsent(gateway) == "500 0"
