"""The migration tools' HTTP/1.1 connection (gateway/migrate/http11.py) against scripted
servers: body framing, interim answers, keep-alive, broken answers, Expect: 100-continue,
wrong regions and proxies. Scripted, because no real S3 server sends malformed framing
or another region's redirect on demand."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.migrate import http11 as transfer_http
from gateway.migrate.http11 import Connection, ProtocolError, ProxyError
from gateway.migrate.wire import S3Error, S3Wire
from gateway.sigv4 import Credentials


@contextlib.contextmanager
def scripted(*answers: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """A loopback server that reads one request per answer (up to the blank line and a
    Content-Length body) and sends the answer as is; yields its host and the requests.
    An answer of b"" closes the connection instead; the next is sent on a new one."""
    requests: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        pending = list(answers)
        while pending and not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            with conn, conn.makefile("rb") as reader:
                while pending:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head.endswith(b"\r\n\r\n"):
                        break  # the client hung up: take its next connection
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    requests.append(head + reader.read(length))
                    answer = pending.pop(0)
                    if not answer:
                        break
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", requests
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def ask(conn: Connection, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"host": conn.host}
    if body is not None:
        headers["content-length"] = str(len(body))
    response = conn.request(method, "/b/k?x=1", headers, body, 4)
    return response.status, response.read()


def test_content_length_and_keep_alive() -> None:
    """Two answers framed by Content-Length on one connection; the request line,
    headers and a small body go out together."""
    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "e"\r\n\r\nhello'
    with scripted(answer, answer) as (host, requests):
        conn = Connection(host, tls=False, timeout=5)
        assert ask(conn, "PUT", b"data") == (200, b"hello")
        assert ask(conn) == (200, b"hello")
        conn.close()
    assert requests[0] == (
        f"PUT /b/k?x=1 HTTP/1.1\r\nhost: {host}\r\ncontent-length: 4\r\n\r\ndata".encode()
    )


def test_chunked_body_and_trailers() -> None:
    """Chunked bodies (Go servers use them for long XML) are joined, trailers skipped."""
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
    with scripted(answer, answer) as (host, _):
        conn = Connection(host, tls=False, timeout=5)
        assert ask(conn) == (200, b"abcde")
        response = conn.request("GET", "/", {}, None, 4)
        assert [response.read(2) for _ in range(4)] == [b"ab", b"c", b"de", b""]
        conn.close()


def test_head_interim_and_close_delimited() -> None:
    """HEAD has no body whatever its Content-Length; a 100 Continue is skipped; a body
    without length ends with the connection, which cannot be reused."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    until_close = b"HTTP/1.0 200 OK\r\n\r\nrest of it"
    with scripted(head, interim, until_close, b"") as (host, _):
        conn = Connection(host, tls=False, timeout=5)
        assert ask(conn, "HEAD") == (200, b"")
        assert ask(conn) == (204, b"")
        response = conn.request("GET", "/", {}, None, 4)
        assert response.will_close
        assert conn._sock is not None
        conn._sock.shutdown(socket.SHUT_WR)  # let the scripted server close its side
        assert response.read() == b"rest of it"
        conn.close()


def test_broken_answers_are_protocol_errors() -> None:
    """A closed connection, garbage or a short body raise ProtocolError (retried by the
    client), and a closed connection is opened again on the next request."""
    with scripted(
        b"", b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", b""
    ) as (
        host,
        _,
    ):
        conn = Connection(host, tls=False, timeout=5)
        with pytest.raises(ProtocolError, match="closed the connection"):
            ask(conn)
        conn.close()
        with pytest.raises(ProtocolError, match="bad status line"):
            ask(conn)
        conn.close()
        response = conn.request("GET", "/", {}, None, 4)
        assert conn._sock is not None
        conn._sock.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match="mid-body"):
            response.read()
        conn.close()


def test_malformed_framing_is_a_protocol_error() -> None:
    """Item 8 (issue 12): a non-numeric, signed or doubled Content-Length, a chunk size
    that is not plain hex and a status that is not three ASCII digits are each a
    ProtocolError (which the client retries), never a bare ValueError."""
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n",
        "HTTP/1.1 2\u00b20 OK\r\n\r\n".encode("latin-1"),
    ]
    for answer in answers:
        with scripted(answer) as (host, _):
            conn = Connection(host, tls=False, timeout=5)
            with pytest.raises(ProtocolError):
                ask(conn)
            conn.close()
    # HEAD has no body, but its Content-Length is the object's size: checked too.
    with scripted(answers[0]) as (host, _):
        conn = Connection(host, tls=False, timeout=5)
        with pytest.raises(ProtocolError, match="bad Content-Length"):
            ask(conn, "HEAD")
        conn.close()


def wire_on(host: str, **options: Any) -> S3Wire:
    fixed = Credentials("AKIAEXAMPLE", "secret")
    return S3Wire(
        endpoint_url=f"http://{host}",
        region="us-east-1",
        bucket="b",
        addressing_style="path",
        credentials=lambda: fixed,
        backoff_base=0.001,
        **options,
    )


def test_bad_framing_is_retried_then_reported() -> None:
    """Item 8 (issue 12): S3Wire tries a request again after a malformed answer, and
    after its last try reports the ProtocolError as an S3Error."""
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n"
    good = b'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: "e"\r\n\r\n'
    with scripted(bad, bad, good) as (host, requests):
        wire = wire_on(host, max_attempts=3)
        info = wire.head_object("k")
        wire.close()
    assert info is not None and info.size == 3
    assert (wire.retries, len(requests)) == (2, 3)
    with scripted(bad, bad) as (host, _):
        wire = wire_on(host, max_attempts=2)
        with pytest.raises(S3Error, match="ProtocolError: bad Content-Length '12x'"):
            wire.head_object("k")
        wire.close()


@contextlib.contextmanager
def expecting(interim: bytes | None, final: bytes) -> Iterator[tuple[str, list[int]]]:
    """A server for one request with ``Expect: 100-continue``: it sends ``interim``
    (None: nothing), reads what body comes within a moment, then sends ``final``.
    Yields its host and, once done, the number of body bytes it received."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[int] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as reader:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += reader.readline()
            assert b"\r\nExpect: 100-continue\r\n" in head
            if interim is not None:
                conn.sendall(interim)
            if interim is None or interim.startswith(b"HTTP/1.1 100"):
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                received.append(len(reader.read(length)))
                conn.sendall(final)
            else:
                conn.settimeout(0.3)  # the refusal was sent: does a body follow anyway?
                got = 0
                with contextlib.suppress(TimeoutError):
                    while data := conn.recv(65536):
                        got += len(data)
                received.append(got)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        thread.join(5)
        listener.close()


def test_expect_continue_on_large_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 8 (issue 12): a body of 1 MiB or more goes after the server's 100 Continue;
    a final answer instead of it means the body is never sent (and the connection is
    not reused); a server that ignores Expect gets the body after a short wait."""
    monkeypatch.setattr(transfer_http, "CONTINUE_WAIT", 0.05)
    body = bytes(transfer_http.EXPECT_CONTINUE)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    for interim in (b"HTTP/1.1 100 Continue\r\n\r\n", None):
        with expecting(interim, ok) as (host, received):
            conn = Connection(host, tls=False, timeout=5)
            assert ask(conn, "PUT", body) == (200, b"")
            conn.close()
        assert received == [len(body)]
    refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ndenied!"
    with expecting(refusal, b"") as (host, received):
        conn = Connection(host, tls=False, timeout=5)
        response = conn.request("PUT", "/b/k", {"content-length": str(len(body))}, body, 4)
        assert (response.status, response.read(), response.will_close) == (403, b"denied!", True)
        conn.close()
    assert received == [0]
    # Small bodies go with their headers, without waiting for anything.
    with scripted(ok) as (host, requests):
        conn = Connection(host, tls=False, timeout=5)
        assert ask(conn, "PUT", b"small") == (200, b"")
        conn.close()
    assert b"expect" not in requests[0].lower()


def test_wrong_region_names_the_region() -> None:
    """Item 8 (issue 12): a 301 or 307 from S3 (a bucket of another region) is reported
    with the region S3 names, from x-amz-bucket-region or the XML's Endpoint, and the
    CLI turns it into a one-line AWS_S3_REGION_NAME error."""
    moved = (
        b"HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    xml = (
        b"<?xml version='1.0'?><Error><Code>TemporaryRedirect</Code><Message>Please re-send"
        b"</Message><Endpoint>b.s3.ap-southeast-2.amazonaws.com</Endpoint></Error>"
    )
    temporary = b"HTTP/1.1 307 Temporary Redirect\r\nContent-Length: %d\r\n\r\n%s" % (
        len(xml),
        xml,
    )
    with scripted(moved, temporary) as (host, _):
        wire = wire_on(host)
        with pytest.raises(S3Error) as first:
            wire.head_object("k")
        assert first.value.region == "eu-west-1"
        assert "set AWS_S3_REGION_NAME=eu-west-1" in str(first.value)
        with pytest.raises(S3Error) as second:
            wire.check_bucket()
        assert second.value.code == "TemporaryRedirect"
        assert second.value.region == "ap-southeast-2"
        wire.close()
    assert wire.retries == 0  # another region is no transient fault


def test_wrong_region_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 8 (issue 12): ``upload`` against a bucket of another region exits 2 with one
    line naming AWS_S3_REGION_NAME and the region to set."""
    from gateway.cli import main
    from tests.conftest import SECRET

    media = tmp_path / "m"
    media.mkdir()
    xml = (
        b"<?xml version='1.0'?><Error><Code>PermanentRedirect</Code><Message>Use the"
        b" endpoint</Message><Endpoint>b.s3.eu-central-1.amazonaws.com</Endpoint></Error>"
    )
    moved = b"HTTP/1.1 301 Moved Permanently\r\nContent-Length: %d\r\n\r\n%s" % (len(xml), xml)
    with scripted(moved) as (host, _):
        for name, value in {
            "GATEWAY_SECRET_KEY": SECRET,
            "MEDIA_ROOT": str(media),
            "USE_S3": "true",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_STORAGE_BUCKET_NAME": "b",
            "AWS_S3_ENDPOINT_URL": f"http://{host}",
        }.items():
            monkeypatch.setenv(name, value)
        assert main(["upload"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("media-gateway: AWS_S3_REGION_NAME: bucket 'b': PermanentRedirect:")
    assert "set AWS_S3_REGION_NAME=eu-central-1" in err


def test_plain_http_through_a_proxy_is_absolute_form() -> None:
    """Item 63: through an http:// proxy, plain-http requests name their whole URL
    (absolute form) and carry the proxy's credentials; https ones tunnel (CONNECT,
    tests/test_network.py)."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with scripted(answer) as (proxy, requests):
        conn = Connection(
            "s3.example:9000", tls=False, timeout=5, proxy=f"http://user:p%40ss@{proxy}"
        )
        assert ask(conn) == (200, b"ok")
        conn.close()
    line = requests[0].partition(b"\r\n")[0]
    assert line == b"GET http://s3.example:9000/b/k?x=1 HTTP/1.1"
    assert b"\r\nProxy-Authorization: Basic dXNlcjpwQHNz\r\n" in requests[0]


def test_refused_connect_is_a_proxy_error() -> None:
    """Item 63: a proxy that refuses the tunnel (407 here) or cannot be reached is a
    ProxyError that names the proxy without its password."""
    with scripted(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n") as (proxy, _):
        conn = Connection("s3.example:443", tls=True, timeout=5, proxy=f"http://u:pw@{proxy}")
        with pytest.raises(ProxyError, match=f"the proxy http://{proxy} refused CONNECT") as e:
            ask(conn)
        assert "pw" not in str(e.value)
        conn.close()
