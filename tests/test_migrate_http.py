"""The migration tools' HTTP/1.1 connection (gateway/transfer_http.py) against scripted
servers: body framing, interim answers, keep-alive and broken answers."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from gateway.transfer_http import Connection, ProtocolError


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


def test_content_length_and_keep_alive():
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


def test_chunked_body_and_trailers():
    """Chunked bodies (Go servers use them for long XML) are joined, trailers skipped."""
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
    with scripted(answer, answer) as (host, _):
        conn = Connection(host, tls=False, timeout=5)
        assert ask(conn) == (200, b"abcde")
        response = conn.request("GET", "/", {}, None, 4)
        assert [response.read(2) for _ in range(4)] == [b"ab", b"c", b"de", b""]
        conn.close()


def test_head_interim_and_close_delimited():
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
        conn._sock.shutdown(socket.SHUT_WR)  # let the scripted server close its side
        assert response.read() == b"rest of it"
        conn.close()


def test_broken_answers_are_protocol_errors():
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
        conn._sock.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match="mid-body"):
            response.read()
        conn.close()
