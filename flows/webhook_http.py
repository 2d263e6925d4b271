"""The webhook receiver's HTTP/1.1 front: bounded in every dimension, and never a traceback.

`flows.receiver` hands `WebhookServer` a `Handler`; this module reads requests and writes
answers. What it promises, whatever a client sends:

- A connection costs one coroutine until its request is complete, not a thread: idle or
  slow clients cannot use up the workers. At most `Limits.connections` are open; past that,
  the one that has waited longest without sending a request line is dropped for the new one
  (or, when every open one is mid-request, the new one is answered 503).
- A request line must arrive within `idle_timeout` of the connection, the whole request
  within `read_timeout`; a client that is slower is dropped (408 when it can still read).
- The head is at most `MAX_HEAD` bytes and `MAX_HEADERS` lines (431); a body needs a
  valid `Content-Length` (411 without one, chunked included; 400 for one that is not a
  number), at most `Limits.max_body` bytes (413), and none of it is read before its length
  is checked.
- Anything malformed (request line, header line, a repeated header that must be single, a
  target that is not a path) is a 400; an unknown method a 405. Every answer closes the
  connection (`Connection: close`), so a request can never be misread as part of another.
- The handler is called in two steps: `admit` on the event loop, for what is quick (is the
  sender who it says, is the body readable), and the work it returns, if any, in a pool of
  `Limits.workers` threads, with at most `Limits.queue` waiting; more get 503 with
  Retry-After. An unauthenticated flood never reaches the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import resource
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 16 << 10
"""Request line and headers together, in bytes."""
MAX_HEADERS = 64
SINGLE_HEADERS = frozenset({
    "content-length", "transfer-encoding", "host", "authorization", "x-ferryman-token",
    "x-ferryman-signature", "x-ferryman-timestamp",
})
"""Headers that mean something only once: two of them are a 400, not a guess which counts."""
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_METHODS = ("GET", "POST")
log = logging.getLogger("ferryman.webhook")

Reply = tuple[int, dict]
Work = Callable[[], Reply]


@dataclass(frozen=True)
class Limits:
    """How much of the machine the receiver may use; the defaults fit a registry's bursts."""

    workers: int = 8
    """Deliveries handled at once (each may wait on Prefect and the deploy target)."""
    queue: int = 64
    """Admitted deliveries waiting for a worker; more are answered 503."""
    connections: int = 1024
    """Open connections; past it the longest-idle one is dropped."""
    idle_timeout: float = 5.0
    """Seconds from connecting to a complete request line."""
    read_timeout: float = 10.0
    """Seconds from connecting to a complete request, body included."""
    write_timeout: float = 10.0
    """Seconds to hand the answer to a client that does not read it."""
    max_body: int = 1 << 20


class Headers(dict):
    """Request headers by lower-case name; `get` takes any case."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class HttpRequest:
    """One complete, well-formed request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes


class Handler(Protocol):
    def admit(self, request: HttpRequest) -> Reply | Work:
        """Reply now (on the event loop: nothing slow), or return the work that answers."""


class HttpError(Exception):
    """A request this front answers itself, with `status` and `message`."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


class _Gone(Exception):
    """The client closed, or was too slow: nothing more to read, maybe nothing to answer."""

    def __init__(self, answer: HttpError | None = None) -> None:
        super().__init__()
        self.answer = answer


def parse_request_line(line: bytes) -> tuple[str, str, dict[str, list[str]]]:
    """(method, path, query) of `METHOD SP /target SP HTTP/1.x`; HttpError 400/405 if not."""
    try:
        text = line.rstrip(b"\r\n").decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(HTTPStatus.BAD_REQUEST, "the request line is not ASCII") from None
    parts = text.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0].encode()):
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(HTTPStatus.BAD_REQUEST, "only HTTP/1.0 and HTTP/1.1 are spoken here")
    if not _TARGET.fullmatch(target):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the request target must be a path")
    if method not in _METHODS:
        raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"method {method} is not allowed",
                        {"Allow": ", ".join(_METHODS)})
    try:
        url = urlsplit(target)
        query = parse_qs(url.query, max_num_fields=32)
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request target") from None
    return method, url.path, query


def parse_header_line(line: bytes) -> tuple[str, str]:
    """(lower-case name, value) of `Name: value`; HttpError 400 for anything else."""
    line = line.rstrip(b"\r\n")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        # No name, a space before the colon, or a folded continuation line (obsolete).
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed header line")
    value = value.strip(b" \t")
    if not _FIELD_VALUE.fullmatch(value):
        raise HttpError(HTTPStatus.BAD_REQUEST, "a header value holds control characters")
    return name.decode("ascii").lower(), value.decode("latin-1")


def body_length(method: str, headers: Headers, max_body: int) -> int:
    """How many body bytes to read; HttpError 400/411/413 when that is not clear and small."""
    length = headers.get("content-length")
    if headers.get("transfer-encoding") is not None:
        # A chunked body has no length to check before reading it; both headers at once is
        # how requests are smuggled past proxies.
        if length is not None:
            raise HttpError(HTTPStatus.BAD_REQUEST,
                            "Transfer-Encoding and Content-Length together")
        raise HttpError(HTTPStatus.LENGTH_REQUIRED,
                        "send the body with a Content-Length (no chunked bodies)")
    if length is None:
        if method == "POST":
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
        return 0
    if not length.isascii() or not length.isdigit() or len(length) > 18:
        raise HttpError(HTTPStatus.BAD_REQUEST, "Content-Length is not a byte count")
    if int(length) > max_body:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"a delivery is at most {max_body} bytes")
    return int(length)


def response(status: int, answer: dict, headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 answer with a JSON body, closing the connection."""
    data = json.dumps(answer).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Server: ferryman-webhook",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def limits_for_this_process(limits: Limits) -> Limits:
    """`limits` with no more connections than this process may open files.

    Past its file limit, asyncio's accept fails and logs the error with a traceback, and
    stops accepting for a second: raise the soft limit as far as the hard one allows, and
    keep the connection limit under it, with room for the workers' own sockets and files.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return limits
    return dataclasses.replace(limits, connections=max(16, soft - 256))


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.opened = time.monotonic()
        self.idle = True
        """No complete request line yet: what is dropped first when too many are open."""


class WebhookServer:
    """Serves `handler` on host:port (bound at once, so `server_address` is known).

    Runs an asyncio loop in the thread that calls `serve_forever`; `shutdown` (from any
    other thread) makes it return; `server_close` releases the socket and the workers. The
    same three calls as `socketserver`'s servers.
    """

    def __init__(self, host: str, port: int, handler: Handler, limits: Limits = Limits()):
        self.limits = limits
        self._handler = handler
        self._socket = socket.create_server((host, port), backlog=1024)
        self.server_address = self._socket.getsockname()[:2]
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="webhook")
        self._waiting = 0  # admitted work, queued or running
        self._open: dict[asyncio.Task, _Connection] = {}
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    # -- socketserver's interface -----------------------------------------------------------

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Serve until `shutdown`. (`poll_interval` is accepted for socketserver's callers.)"""
        try:
            asyncio.run(self._serve())
        finally:
            self._done.set()

    def shutdown(self) -> None:
        self._stopping.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not self._done.is_set():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)
            self._done.wait()

    def server_close(self) -> None:
        self._socket.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- serving ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stopping.is_set():
            return
        server = await asyncio.start_server(self._accept, sock=self._socket, limit=MAX_HEAD)
        async with server:
            await self._wake.wait()
            server.close()
            for task in list(self._open):
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(writer)
        if len(self._open) >= self.limits.connections and not self._drop_longest_idle():
            await self._send(writer, response(HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": "too many open connections"}, {"Retry-After": "5"}))
            return
        self._open[task] = connection
        try:
            await self._serve_one(reader, connection)
        except asyncio.CancelledError:
            writer.transport.abort()
        except Exception:  # a bug here: say so once, and never leave the client hanging
            log.exception("the webhook receiver failed on a request")
            await self._send(writer, response(HTTPStatus.INTERNAL_SERVER_ERROR, {
                "error": "internal error"}))
        finally:
            self._open.pop(task, None)

    def _drop_longest_idle(self) -> bool:
        idle = [c for c in self._open.values() if c.idle]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.opened)
        oldest.writer.transport.abort()  # its coroutine sees the connection lost and ends
        oldest.idle = False  # not picked twice before its coroutine has ended
        return True

    async def _serve_one(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        writer = connection.writer
        try:
            request = await self._read(reader, connection)
        except _Gone as gone:
            if gone.answer is None:
                writer.transport.abort()
            else:
                await self._send(writer, response(gone.answer.status, {
                    "error": str(gone.answer)}), reader)
            return
        except HttpError as e:
            log.info("refused a request: %d %s", e.status, e)
            await self._send(writer, response(e.status, {"error": str(e)}, e.headers), reader)
            return
        status, answer, headers = await self._answer(request)
        log.info("%s %s %s", request.method, request.path, status)
        await self._send(writer, response(status, answer, headers))

    async def _read(self, reader: asyncio.StreamReader, connection: _Connection) -> HttpRequest:
        limits = self.limits
        line = await self._line(reader, connection.opened + limits.idle_timeout)
        connection.idle = False
        method, path, query = parse_request_line(line)
        deadline = connection.opened + limits.read_timeout
        headers, size, count = Headers(), len(line), 0
        while True:
            line = await self._line(reader, deadline)
            size, count = size + len(line), count + 1
            if size > MAX_HEAD or count > MAX_HEADERS + 1:  # the +1: the empty line
                raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                f"the request head is limited to {MAX_HEAD} bytes and "
                                f"{MAX_HEADERS} headers")
            if line in (b"\r\n", b"\n"):
                break
            name, value = parse_header_line(line)
            if name in headers:
                if name in SINGLE_HEADERS:
                    raise HttpError(HTTPStatus.BAD_REQUEST, f"header {name} is repeated")
                value = f"{headers[name]}, {value}"
            headers[name] = value
        length = body_length(method, headers, limits.max_body)
        if length and (headers.get("expect") or "").lower() == "100-continue":
            connection.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it
        body = await self._within(reader.readexactly(length), deadline) if length else b""
        return HttpRequest(method, path, query, headers, body)

    async def _line(self, reader: asyncio.StreamReader, deadline: float) -> bytes:
        try:
            line = await self._within(reader.readline(), deadline)
        except ValueError:  # longer than the reader's limit (MAX_HEAD)
            raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                            f"a request line or header is longer than {MAX_HEAD} bytes") from None
        if not line.endswith(b"\n"):
            raise _Gone()  # the client closed mid-line (or before sending anything)
        return line

    @staticmethod
    async def _within(read, deadline: float):
        try:
            return await asyncio.wait_for(read, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise _Gone(HttpError(HTTPStatus.REQUEST_TIMEOUT, "the request came too slowly")) \
                from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise _Gone() from None

    async def _answer(self, request: HttpRequest) -> tuple[int, dict, dict[str, str]]:
        admitted = self._handler.admit(request)
        if not callable(admitted):
            return (*admitted, {})
        if self._waiting >= self.limits.workers + self.limits.queue:
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": "too many deliveries at once: send it again"}, {"Retry-After": "5"}
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return (*await loop.run_in_executor(self._pool, admitted), {})
        finally:
            self._waiting -= 1

    async def _send(self, writer: asyncio.StreamWriter, data: bytes,
                    unread: asyncio.StreamReader | None = None) -> None:
        """Write an answer and close. With `unread`, the client may still be sending what was
        not read (a refused body): closing on unread data resets the connection, and the client
        might lose the answer, so the rest is read and dropped first, briefly."""
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self.limits.write_timeout)
            if unread is not None and writer.can_write_eof():
                writer.write_eof()
                await asyncio.wait_for(self._drain_input(unread), 2.0)
            writer.close()
        except (TimeoutError, ConnectionError, RuntimeError, OSError):
            writer.transport.abort()

    async def _drain_input(self, reader: asyncio.StreamReader) -> None:
        left = self.limits.max_body + MAX_HEAD
        while left > 0 and (chunk := await reader.read(min(left, 65536))):
            left -= len(chunk)
