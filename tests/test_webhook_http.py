"""The receiver's HTTP front over real sockets on 127.0.0.1, with a stand-in handler: what it
refuses, how it treats slow, idle and too many clients, and that it never shows a traceback."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

import pytest

from flows.webhook_http import (
    MAX_HEAD,
    HttpRequest,
    Limits,
    WebhookServer,
    limits_for_this_process,
)

FAST = Limits(idle_timeout=1.0, read_timeout=2.0, max_body=1000)


class Handler:
    """Answers 200 with what it was given; `/work` runs in the pool, `/slow` waits for `go`."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []
        self.go = threading.Event()
        self.running = threading.Semaphore(0)

    def admit(self, request: HttpRequest):
        self.requests.append(request)
        answer = {"path": request.path, "length": len(request.body),
                  "query": request.query, "auth": request.headers.get("AUTHORIZATION")}
        if request.path == "/slow":
            def slow():
                self.running.release()
                assert self.go.wait(10)
                return 202, answer
            return slow
        if request.path == "/work":
            return lambda: (202, answer)
        return 200, answer


@pytest.fixture()
def start():
    started: list[tuple[WebhookServer, threading.Thread, Handler]] = []

    def run(limits: Limits = FAST) -> tuple[WebhookServer, Handler]:
        handler = Handler()
        server = WebhookServer("127.0.0.1", 0, handler, limits)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread, handler))
        return server, handler

    yield run
    for server, thread, handler in started:
        handler.go.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def connect(server: WebhookServer) -> socket.socket:
    return socket.create_connection(server.server_address, timeout=10)


def exchange(server: WebhookServer, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` and read until the server closes."""
    with connect(server) as s:
        s.settimeout(timeout)
        s.sendall(data)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            out += chunk
    return out


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def post(path: str = "/", body: bytes = b"{}", *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture()
def no_traceback(caplog):
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        assert record.exc_info is None and "Traceback" not in record.getMessage(), \
            record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()


def test_well_formed_request_reaches_the_handler(start):
    server, handler = start()
    answer = exchange(server, post("/a?token=t&x=1", b'{"k": 1}', "authorization: Bearer b"))
    assert status(answer) == 200
    assert b'"length": 8' in answer and b'"auth": "Bearer b"' in answer
    assert b"Connection: close" in answer
    [request] = handler.requests
    assert request.path == "/a" and request.query == {"token": ["t"], "x": ["1"]}


@pytest.mark.parametrize("request_bytes, expected", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST  /a HTTP/1.1\r\n\r\n", 400),
    (b"POST /a HTTP/2.0\r\nContent-Length: 0\r\n\r\n", 400),
    (b"POST /a HTTP/1.1 extra\r\n\r\n", 400),
    (b"POST http://elsewhere/a HTTP/1.1\r\n\r\n", 400),
    (b"POST /a\x00b HTTP/1.1\r\n\r\n", 400),
    (b"POST /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
    (b"POST //[x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),
    (b"PUT /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
    (post("/a", b"{}", "NoColonHere"), 400),
    (post("/a", b"{}", " folded: continuation"), 400),
    (post("/a", b"{}", "Bad Name: x"), 400),
    (post("/a", b"{}", "X-Ctl: a\x01b"), 400),
    (post("/a", b"{}", "Authorization: a", "authorization: b"), 400),
    (post("/a", b"{}", "Content-Length: 2"), 400),
    (b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /a HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400),
    (b"POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
    (b"POST /a HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
    (b"POST /a HTTP/1.1\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n", 400),
    (b"POST /a HTTP/1.1\r\nContent-Length: \xd9\xa3\r\n\r\n", 400),
    (b"POST /a HTTP/1.1\r\n\r\n", 411),
    (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),
    (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}", 400),
    (b"POST /a HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413),
    (b"POST /a HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n", 431),
    (b"POST /a HTTP/1.1\r\n" + b"X-H: v\r\n" * 100 + b"\r\n", 431),
])
def test_malformed_or_oversized_request_is_refused_before_the_handler(
    start, no_traceback, request_bytes, expected
):
    server, handler = start()
    assert status(exchange(server, request_bytes)) == expected
    assert handler.requests == []


def test_too_large_body_is_refused_without_being_read(start):
    """The answer comes from the head alone: the client has not sent a byte of the body."""
    server, handler = start()
    with connect(server) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 50000000\r\n\r\n")
        started = time.monotonic()
        assert status(s.recv(4096)) == 413
        assert time.monotonic() - started < 1
    assert handler.requests == []


def test_body_sent_after_a_refusal_does_not_cost_the_client_its_answer(start):
    """The server reads and drops what follows a refused head, so closing does not reset
    the connection before the client read the 413."""
    server, _ = start()
    body = b"x" * 5000
    with connect(server) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + body)
        assert status(read_all(s)) == 413


def test_expect_100_continue_is_answered_before_the_body(start):
    server, handler = start()
    with connect(server) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"{}")
        assert status(read_all(s)) == 200


def test_get_without_body_and_health_style_paths_work(start):
    server, handler = start()
    assert status(exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")) == 200
    assert handler.requests[0].method == "GET"


def test_client_that_sends_nothing_is_dropped_after_the_idle_timeout(start, no_traceback):
    server, _ = start()
    with connect(server) as s:
        started = time.monotonic()
        answer = read_all(s)
        waited = time.monotonic() - started
    assert status(answer) == 408 and 0.8 < waited < 3


@pytest.mark.parametrize("partial", [
    b"POST /a HT",  # half a request line: still idle
    b"POST /a HTTP/1.1\r\nContent-Le",  # half the headers
    b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}",  # half the body
])
def test_client_that_sends_half_a_request_is_dropped_after_the_read_timeout(
    start, no_traceback, partial
):
    server, handler = start()
    with connect(server) as s:
        started = time.monotonic()
        s.sendall(partial)
        answer = read_all(s)
        waited = time.monotonic() - started
    assert status(answer) == 408 and waited < 3.5
    assert handler.requests == []


def test_slow_trickle_does_not_extend_the_deadline(start):
    """One byte a second keeps each read short; the deadline is for the whole request."""
    server, _ = start()
    with connect(server) as s:
        s.sendall(b"POST /a HTTP/1.1\r\n")
        started = time.monotonic()
        s.settimeout(0.5)
        answer = b""
        while not answer and time.monotonic() - started < 10:
            s.sendall(b"X")
            with contextlib.suppress(TimeoutError):
                answer = s.recv(4096)
        waited = time.monotonic() - started
    assert status(answer) == 408 and waited < 3


def test_work_beyond_the_workers_and_queue_is_answered_503_at_once(start):
    server, handler = start(Limits(workers=1, queue=1, idle_timeout=5, read_timeout=5))
    first = connect(server)
    first.sendall(post("/slow"))
    assert handler.running.acquire(timeout=5)  # the only worker is busy
    queued = connect(server)
    queued.sendall(post("/slow"))
    time.sleep(0.2)
    started = time.monotonic()
    refused = exchange(server, post("/slow"))
    assert status(refused) == 503 and b"Retry-After: 5" in refused
    assert time.monotonic() - started < 1
    assert status(exchange(server, post("/quick"))) == 200  # answered without a worker
    handler.go.set()
    assert status(read_all(first)) == status(read_all(queued)) == 202
    first.close()
    queued.close()


def test_past_the_connection_limit_the_longest_idle_one_is_dropped(start):
    server, handler = start(Limits(connections=10, idle_timeout=30, read_timeout=30))
    idle = [connect(server) for _ in range(10)]
    time.sleep(0.3)
    assert status(exchange(server, post("/a"))) == 200
    idle[0].settimeout(5)
    assert read_all(idle[0]) == b""  # dropped for the newcomer
    for s in idle:
        s.close()


def test_when_every_connection_is_mid_request_a_newcomer_gets_503(start):
    server, handler = start(Limits(connections=5, idle_timeout=30, read_timeout=30))
    busy = [connect(server) for _ in range(5)]
    for s in busy:
        s.sendall(b"POST /a HTTP/1.1\r\n")  # past the request line: not idle
    time.sleep(0.3)
    assert status(exchange(server, post("/a"))) == 503
    for s in busy:
        s.close()


def test_five_hundred_idle_connections_cost_no_threads_and_block_no_request(start):
    server, handler = start(Limits(idle_timeout=30, read_timeout=30))
    threads = threading.active_count()
    idle = [connect(server) for _ in range(500)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert status(exchange(server, post("/work"))) == 202
        assert time.monotonic() - started < 2
        assert threading.active_count() <= threads + FAST.workers
    finally:
        for s in idle:
            s.close()


def test_shutdown_with_open_connections_returns(start):
    server, _ = start(Limits(idle_timeout=30, read_timeout=30))
    idle = [connect(server) for _ in range(20)]
    time.sleep(0.2)
    started = time.monotonic()
    server.shutdown()
    assert time.monotonic() - started < 5
    for s in idle:
        s.close()


def test_connection_limit_stays_under_the_file_limit(monkeypatch):
    """Past its file limit asyncio's accept logs a traceback and stops for a second."""
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 1024))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: None)
    assert limits_for_this_process(Limits(connections=1024)).connections == 768
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 65536))
    assert limits_for_this_process(Limits(connections=1024)).connections == 1024
