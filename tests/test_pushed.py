"""`emit_pushed` returns only once the Prefect API took the event, against a stand-in of the
API's events endpoint on 127.0.0.1 (the real server is tests/e2e/test_triggers.py's)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.pushed import EVENT, emit_pushed
from tasks.errors import EventNotSentError, TransientError
from tasks.spec import load_spec
from tasks.webhooks import ImagePushed
from tests.helpers import DEMO_SPEC
from tests.registries.servers import free_port

PUSHED = ImagePushed("distribution", "127.0.0.1:5000", "ferryman/demo", "1.3.0",
                     "sha256:" + "a" * 64, None, None)


class EventsAPI(BaseHTTPRequestHandler):
    """`POST /api/events` answers `status`; anything else 404 (as an API without CSRF)."""

    status = 204
    received: list[list[dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/api/events":
            self.send_response(404)
        else:
            self.received.append(json.loads(body))
            self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


@pytest.fixture()
def api():
    handler = type("Handler", (EventsAPI,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{server.server_address[1]}/api"}):
        yield handler
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def spec():
    return load_spec(Path(DEMO_SPEC))


def test_event_is_posted_to_the_events_api_and_taken(api, spec):
    uid = uuid.uuid4()
    emit_pushed("demo", PUSHED, spec, uid)
    [[event]] = api.received
    assert event["id"] == str(uid) and event["event"] == EVENT
    assert event["resource"]["prefect.resource.id"] == "ferryman.app.demo"
    assert event["payload"]["tag"] == "1.3.0" and event["payload"]["digest"] == PUSHED.digest
    assert event["payload"]["trigger"] == "webhook"


@pytest.mark.parametrize("status", [422, 500])
def test_event_the_api_refuses_is_not_sent(api, spec, status):
    api.status = status
    with pytest.raises(EventNotSentError, match="did not take the event") as e:
        emit_pushed("demo", PUSHED, spec, uuid.uuid4())
    assert isinstance(e.value, TransientError)


def test_event_for_an_api_that_does_not_answer_is_not_sent(spec):
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        started = time.monotonic()
        with pytest.raises(EventNotSentError, match="ConnectError"):
            emit_pushed("demo", PUSHED, spec, uuid.uuid4())
    assert time.monotonic() - started < 5
