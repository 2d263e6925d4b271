"""Property: no request makes the receiver answer 5xx or log a traceback. Generated request
lines, headers and bodies (random bytes, JSON, and the senders' real deliveries with fields
changed) go to the real HTTP server on 127.0.0.1 over raw sockets; its logging is captured."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.receiver import Receiver, make_server
from flows.webhook_http import Limits
from tests.test_receiver import HUB_TOKEN, SECRET, Recorder, write_spec
from tests.test_webhooks import DISTRIBUTION, DOCKERHUB, ECR


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    specs = tmp_path_factory.mktemp("specs")
    write_spec(specs, "demo", "ferryman/demo", {"url": "127.0.0.1:5000"}, {})
    write_spec(specs, "shop", "demo", {"kind": "dockerhub", "namespace": "acme"}, {})
    receiver = Receiver(SECRET, specs, emit=Recorder(), current=lambda spec: None,
                        dockerhub_token=HUB_TOKEN)
    served = make_server("127.0.0.1", 0, receiver, Limits(idle_timeout=2, read_timeout=3))
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    captured = Captured()
    root = logging.getLogger()
    root.addHandler(captured)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield served.server_address, captured
    root.removeHandler(captured)
    root.setLevel(level)
    served.shutdown()
    served.server_close()


def exchange(address, data: bytes) -> bytes:
    """Send `data`, say that is all (so an incomplete request ends at once), read the answer."""
    with socket.create_connection(address, timeout=10) as s:
        with contextlib.suppress(OSError):  # the server may refuse before all is sent
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                answer += chunk
    return answer


# -- what is generated ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)


def _paths(node, prefix=()):
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated_delivery(draw) -> object:
    """A real delivery of one sender with one to three fields replaced or removed."""
    document = json.loads(json.dumps(draw(st.sampled_from([DISTRIBUTION, DOCKERHUB, ECR]))))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        node = document
        for key in path[:-1]:
            node = node[key]
        if draw(st.booleans()):
            node[path[-1]] = draw(json_values | st.sampled_from(
                [1e308, -1e308, 10**30, "", "latest", "1.3.0", "a" * 500, None]))
        else:
            del node[path[-1]]
    return document


@st.composite
def retagged_delivery(draw) -> object:
    """A real delivery of one sender reporting a generated tag (and digest)."""
    tag = draw(st.text(max_size=20) | st.from_regex(r"v?\d{1,3}\.\d{1,3}\.\d{1,3}(-rc\.1)?",
                                                      fullmatch=True))
    digest = "sha256:" + draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
    when = draw(st.sampled_from([1780359123, 1e308, -1e308, 1e20, float("inf"), float("nan"),
                                 "2026-06-02T00:12:03Z", "9999-99-99", True])
                | st.floats() | st.integers())
    which = draw(st.sampled_from(["distribution", "dockerhub", "ecr"]))
    document = json.loads(json.dumps({"distribution": DISTRIBUTION, "dockerhub": DOCKERHUB,
                                      "ecr": ECR}[which]))
    if which == "distribution":
        document["events"][1]["target"].update(tag=tag, digest=digest)
        document["events"][1]["timestamp"] = when
    elif which == "dockerhub":
        document["push_data"].update(tag=tag, pushed_at=when)
    else:
        document["detail"].update({"image-tag": tag, "image-digest": digest})
        document["time"] = when
    return document


bodies = st.one_of(
    retagged_delivery().map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_delivery().map(lambda v: json.dumps(v).encode()),
    st.sampled_from([1, 10, 999, 1000, 5000, 100_000]).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([1, 1000, 50_000]).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([b"", b"{", b"null", b"1e999", b"\xff\xfe", b"9" * 5000]),
)
ENDPOINTS = [
    "/hooks/distribution", "/hooks/ecr", "/hooks/dockerhub",
    f"/hooks/dockerhub?token={HUB_TOKEN}", f"/hooks/distribution?token={HUB_TOKEN}",
    "/healthz", "/", "/hooks/x", "/hooks/dockerhub?token=&token=" + HUB_TOKEN,
    "/%ff%00?%%", "/hooks/ecr?a=1&a=2",
]
GARBLED = st.text(max_size=40)
TOKEN = st.from_regex(r"[A-Za-z0-9-]{1,20}", fullmatch=True)
VALUE = st.from_regex(r"[\x20-\x7e]{0,40}", fullmatch=True)
KNOWN_VALUES = st.sampled_from([
    f"Bearer {SECRET}", SECRET, "Bearer ", "", "-1", "1e999", "9" * 400, "nan", "chunked",
    "sha256=" + "0" * 64, "100-continue", "\t", "gzip",
])
KNOWN_NAMES = st.sampled_from([
    "Authorization", "X-Ferryman-Token", "X-Ferryman-Signature", "X-Ferryman-Timestamp",
    "Content-Length", "Transfer-Encoding", "Expect", "Host", "Content-Type",
])


@st.composite
def requests(draw) -> bytes:
    """A request as bytes: mostly a well-formed line and headers around a generated body
    (so the body reaches authentication and the parsers), sometimes garbled throughout."""
    garbled = draw(st.integers(0, 9)) < 3
    if garbled:
        method = draw(st.sampled_from(["POST", "GET", "PUT", "", "post"]) | GARBLED)
        target = draw(st.sampled_from(ENDPOINTS) | GARBLED)
        version = draw(st.sampled_from(["HTTP/1.1", "HTTP/2", "HTTP/1.1 x", ""]) | GARBLED)
        headers = draw(st.lists(st.tuples(KNOWN_NAMES | GARBLED, KNOWN_VALUES | GARBLED),
                                max_size=6))
    else:
        method = draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT"]))
        target = draw(st.sampled_from(ENDPOINTS[:4] * 3 + ENDPOINTS))
        version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
        headers = draw(st.lists(st.tuples(KNOWN_NAMES | TOKEN, KNOWN_VALUES | VALUE),
                                max_size=3))
    body = draw(bodies)
    how = draw(st.sampled_from(["bearer", "bearer", "signed", "none"]))
    if how == "bearer":
        headers.append(("Authorization", f"Bearer {SECRET}"))
    elif how == "signed":
        stamp = str(int(time.time()))
        mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        headers += [("X-Ferryman-Signature", f"sha256={mac.hexdigest()}"),
                    ("X-Ferryman-Timestamp", stamp)]
    length = draw(st.sampled_from(["right"] * 4 + ["none", "short", "long"]))
    if length != "none":
        n = {"right": 0, "short": -1, "long": 7}[length] + len(body)
        headers.append(("Content-Length", str(max(n, 0))))
    line = f"{method} {target} {version}"
    head = "\r\n".join([line, *(f"{k}: {v}" for k, v in headers)]) + "\r\n\r\n"
    return head.encode("utf-8", "surrogatepass") + body


PROPERTY = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check(server, data: bytes) -> None:
    address, captured = server
    before = len(captured.records)
    answer = exchange(address, data)
    if answer:  # nothing at all is fine: a request cut short is dropped
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:300]
    for record in captured.records[before:]:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()
        assert "Traceback" not in record.getMessage()


@PROPERTY
@given(requests())
def test_generated_requests_never_get_5xx_or_a_traceback(server, data):
    check(server, data)


@PROPERTY
@given(st.binary(max_size=2000))
def test_random_bytes_never_get_5xx_or_a_traceback(server, data):
    check(server, data)
