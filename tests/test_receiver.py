"""The webhook receiver over real HTTP on 127.0.0.1, with the Prefect emitter and the target
read replaced by recorders (the end-to-end path through Prefect is tests/e2e/test_triggers.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flows.receiver import Receiver, make_server, read_secrets
from flows.webhook_http import Limits, WebhookServer
from tasks.errors import SpecError
from tests.helpers import changed, demo_spec_copy
from tests.test_webhooks import DIGEST, DISTRIBUTION, DOCKERHUB, ECR

SECRET = "s3cret-for-tests-only"
HUB_TOKEN = "hub-t0ken-for-tests-only"
FAST = Limits(idle_timeout=1.0, read_timeout=2.0)
"""Short time-outs, so the tests of slow clients take seconds."""


def write_spec(folder: Path, app: str, repository: str, registry: dict, policy: dict) -> None:
    """The demo spec as `<folder>/<app>/release.yaml`, for another app and registry."""

    def change(data: dict) -> None:
        data["app"] = app
        data["image"]["repository"] = repository
        data["registry"] = registry
        data["tag_policy"] = policy

    (folder / app).mkdir(parents=True)
    demo_spec_copy(folder / app, change)


class Recorder:
    """Stands in for Prefect: records each event; `fail` makes the next sends fail, and
    `fail_tags` the next send of each of those tags; while `hold` is set, a send waits for
    `go` (a slow Prefect)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str | None]] = []
        self.fail = 0
        self.fail_tags: set[str] = set()
        self.hold = False
        self.waiting = threading.Event()
        self.go = threading.Event()

    def __call__(self, app, pushed, spec, event_id) -> None:
        if self.hold:
            self.waiting.set()
            assert self.go.wait(10), "the test never let the held send go"
        if self.fail or pushed.tag in self.fail_tags:
            self.fail = max(0, self.fail - 1)
            self.fail_tags.discard(pushed.tag)
            raise ConnectionError("Prefect is down")
        self.sent.append((app, pushed.tag, pushed.digest))


@pytest.fixture()
def specs(tmp_path) -> Path:
    specs = tmp_path / "specs"
    write_spec(specs, "demo", "ferryman/demo", {"url": "127.0.0.1:5000"}, {"semver": ">=1.0.0"})
    write_spec(specs, "shop", "demo", {"kind": "dockerhub", "namespace": "acme"}, {})
    return specs


@dataclass
class Served:
    client: httpx.Client
    recorder: Recorder
    running: dict[str, str | None]
    server: WebhookServer

    @property
    def port(self) -> int:
        return self.server.server_address[1]


def serve(server: WebhookServer):
    """Run `server` in a thread; returns what stops it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    return stop


@pytest.fixture()
def make_served(specs):
    stops = []

    def make(limits: Limits = FAST, **options) -> Served:
        recorder = Recorder()
        running = {"demo": "1.2.0", "shop": None}
        options.setdefault("dockerhub_token", HUB_TOKEN)
        receiver = Receiver(SECRET, specs, emit=recorder,
                            current=lambda spec: running[spec.app], **options)
        server = make_server("127.0.0.1", 0, receiver, limits)
        stops.append(serve(server))
        client = httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}",
                              timeout=10)
        stops.append(client.close)
        return Served(client, recorder, running, server)

    yield make
    for stop in reversed(stops):
        stop()


@pytest.fixture()
def served(make_served) -> Served:
    return make_served()


@pytest.fixture()
def receiver(served):
    return served.client, served.recorder, served.running


def post(client, path, body, **headers):
    return client.post(path, content=json.dumps(body).encode(), headers=headers)


def bearer(secret: str = SECRET) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def test_tagged_push_with_the_secret_emits_one_event(receiver):
    client, recorder, _ = receiver
    answer = post(client, "/hooks/distribution", DISTRIBUTION, **bearer())
    assert answer.status_code == 202
    assert recorder.sent == [("demo", "1.3.0", DIGEST)]
    [handled] = answer.json()["handled"]
    assert handled["result"] == "announced" and "newer than 1.2.0" in handled["detail"]


def test_wrong_secret_gets_401_and_emits_nothing(receiver, caplog):
    client, recorder, _ = receiver
    with caplog.at_level(logging.INFO, logger="ferryman.webhook"):
        answer = post(client, "/hooks/distribution", DISTRIBUTION, **bearer("guess"))
        missing = post(client, "/hooks/distribution", DISTRIBUTION)
    assert answer.status_code == missing.status_code == 401
    assert recorder.sent == []
    assert SECRET not in answer.text + caplog.text


def test_forged_signature_gets_401_and_a_valid_one_is_accepted(receiver):
    client, recorder, _ = receiver
    body = json.dumps(DISTRIBUTION).encode()
    stamp = str(int(time.time()))
    good = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    forged = hmac.new(b"not-the-secret", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    refused = client.post("/hooks/distribution", content=body, headers={
        "X-Ferryman-Signature": f"sha256={forged}", "X-Ferryman-Timestamp": stamp})
    assert refused.status_code == 401 and recorder.sent == []
    old = str(int(time.time()) - 3600)
    replayed = hmac.new(SECRET.encode(), f"{old}.".encode() + body, hashlib.sha256).hexdigest()
    late = client.post("/hooks/distribution", content=body, headers={
        "X-Ferryman-Signature": f"sha256={replayed}", "X-Ferryman-Timestamp": old})
    assert late.status_code == 401 and recorder.sent == []
    accepted = client.post("/hooks/distribution", content=body, headers={
        "X-Ferryman-Signature": f"sha256={good}", "X-Ferryman-Timestamp": stamp})
    assert accepted.status_code == 202 and len(recorder.sent) == 1


def test_same_push_delivered_twice_emits_once(receiver):
    client, recorder, _ = receiver
    first = post(client, "/hooks/distribution", DISTRIBUTION, **bearer())
    again = post(client, "/hooks/distribution", changed(DISTRIBUTION, "events.1.id", "retry-2"),
                 **bearer())
    assert first.status_code == again.status_code == 202
    assert again.json()["handled"][0]["result"] == "duplicate"
    assert recorder.sent == [("demo", "1.3.0", DIGEST)]


@pytest.mark.parametrize("tag, why", [
    ("latest", "ignore list"),
    ("nightly", "not a semantic version"),
    ("1.3.0-rc.1", "prerelease"),
    ("1.1.0", "older than the running 1.2.0"),
    ("1.2.0", "the same version as the running 1.2.0"),
])
def test_tag_outside_the_policy_emits_nothing(receiver, tag, why):
    client, recorder, _ = receiver
    answer = post(client, "/hooks/distribution", changed(DISTRIBUTION, "events.1.target.tag", tag),
                  **bearer())
    assert answer.status_code == 202 and recorder.sent == []
    [handled] = answer.json()["handled"]
    assert handled["result"] == "ignored" and why in handled["detail"]


def test_layer_pushes_and_unknown_repositories_emit_nothing(receiver):
    client, recorder, _ = receiver
    layers_only = {"events": DISTRIBUTION["events"][:1]}
    assert post(client, "/hooks/distribution", layers_only, **bearer()).json() == {"handled": []}
    other = post(client, "/hooks/distribution",
                 changed(DISTRIBUTION, "events.1.target.repository", "someone/else"), **bearer())
    assert other.json()["handled"][0]["result"] == "ignored"
    assert recorder.sent == []


def test_dockerhub_webhook_with_its_token_in_the_url_is_accepted(receiver, caplog):
    client, recorder, _ = receiver
    with caplog.at_level(logging.INFO, logger="ferryman.webhook"):
        answer = post(client, f"/hooks/dockerhub?token={HUB_TOKEN}", DOCKERHUB)
    assert answer.status_code == 202
    assert recorder.sent == [("shop", "1.3.0", None)]
    assert HUB_TOKEN not in caplog.text  # the request log shows the path without its query


@pytest.mark.parametrize("path", ["/hooks/distribution", "/hooks/ecr"])
@pytest.mark.parametrize("token", [HUB_TOKEN, SECRET])
def test_url_token_opens_no_endpoint_but_dockerhub(receiver, path, token):
    """A URL ends up in proxies' logs: a leaked Docker Hub URL must not open the others."""
    client, recorder, _ = receiver
    body = DISTRIBUTION if path == "/hooks/distribution" else ECR
    answer = post(client, f"{path}?token={token}", body)
    assert answer.status_code == 401 and "only by /hooks/dockerhub" in answer.json()["error"]
    leaked_token_as_header = post(client, path, body, **bearer(HUB_TOKEN))
    assert leaked_token_as_header.status_code == 401
    assert recorder.sent == []


def test_dockerhub_endpoint_takes_only_its_own_token(receiver):
    client, recorder, _ = receiver
    assert post(client, f"/hooks/dockerhub?token={SECRET}", DOCKERHUB).status_code == 401
    assert post(client, "/hooks/dockerhub", DOCKERHUB, **bearer()).status_code == 401
    assert recorder.sent == []


def test_dockerhub_endpoint_is_off_without_a_token(make_served):
    served = make_served(dockerhub_token=None)
    answer = post(served.client, f"/hooks/dockerhub?token={SECRET}", DOCKERHUB)
    assert answer.status_code == 404 and "without a Docker Hub token" in answer.json()["error"]
    assert served.recorder.sent == []


def test_one_value_for_both_secrets_is_refused(specs):
    with pytest.raises(SpecError, match="must differ"):
        Receiver(SECRET, specs, dockerhub_token=SECRET)


def test_secrets_are_read_from_their_files_or_the_environment(tmp_path, monkeypatch):
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "hub").write_text(HUB_TOKEN)
    assert read_secrets(str(tmp_path / "secret"), str(tmp_path / "hub")) == (SECRET, HUB_TOKEN)
    monkeypatch.setenv("FERRYMAN_WEBHOOK_SECRET", "from-env")
    monkeypatch.delenv("FERRYMAN_DOCKERHUB_TOKEN", raising=False)
    assert read_secrets(None, None) == ("from-env", None)
    monkeypatch.delenv("FERRYMAN_WEBHOOK_SECRET")
    with pytest.raises(SpecError, match="no webhook secret"):
        read_secrets(None, None)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SpecError, match="--dockerhub-token-file.*empty|empty.*dockerhub"):
        read_secrets(str(tmp_path / "secret"), str(tmp_path / "empty"))


def test_ecr_event_with_the_secret_header_is_accepted(receiver):
    client, recorder, _ = receiver
    answer = post(client, "/hooks/ecr", ECR, **{"X-Ferryman-Token": SECRET})
    assert answer.status_code == 202
    assert recorder.sent == [("demo", "1.3.0", DIGEST)]


def test_signature_without_its_timestamp_is_refused(receiver):
    client, recorder, _ = receiver
    body = json.dumps(DISTRIBUTION).encode()
    untimed = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = client.post("/hooks/distribution", content=body,
                         headers={"X-Ferryman-Signature": f"sha256={untimed}"})
    assert answer.status_code == 401 and "needs its timestamp" in answer.json()["error"]
    assert recorder.sent == []


def test_event_that_cannot_be_sent_gets_503_and_is_sent_when_delivered_again(receiver):
    client, recorder, _ = receiver
    recorder.fail = 1
    failed = post(client, "/hooks/distribution", DISTRIBUTION, **bearer())
    assert failed.status_code == 503 and "Prefect is down" in failed.json()["error"]
    retried = post(client, "/hooks/distribution", DISTRIBUTION, **bearer())
    assert retried.status_code == 202 and recorder.sent == [("demo", "1.3.0", DIGEST)]


def test_malformed_delivery_gets_400_and_unknown_path_404(receiver):
    client, recorder, _ = receiver
    bad = client.post("/hooks/distribution", content=b"{not json", headers=bearer())
    assert bad.status_code == 400
    shapeless = post(client, "/hooks/ecr", {"detail-type": "ECR Image Action"}, **bearer())
    assert shapeless.status_code == 400 and "detail" in shapeless.json()["error"]
    assert post(client, "/hooks/gitlab", DISTRIBUTION, **bearer()).status_code == 404
    assert recorder.sent == []


def test_unauthenticated_body_is_not_parsed(receiver):
    client, recorder, _ = receiver
    # Bad JSON and no secret: 401, not 400 - nothing is read before the sender is known.
    assert client.post("/hooks/distribution", content=b"{not json").status_code == 401


def test_health_answers_while_serving(receiver):
    client, _, _ = receiver
    assert client.get("/healthz").json() == {"ok": True}


# Bounded, malformed and slow requests, with the receiver behind the HTTP front (the front's
# own rules are tests/test_webhook_http.py's).


def raw(served: Served, data: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send `data` on a socket of its own; (status, whole answer) once the server closes."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


@pytest.mark.parametrize("length, expected", [("-1", 400), ("abc", 400), (str(2 << 20), 413)])
def test_body_length_is_judged_before_the_sender_is(served, length, expected):
    """No secret at all, and still not 401: the length is checked first, nothing is read."""
    status, _ = raw(served, f"POST /hooks/distribution HTTP/1.1\r\nContent-Length: {length}"
                            "\r\n\r\n".encode())
    assert status == expected and served.recorder.sent == []


def test_chunked_delivery_is_asked_for_a_length(served):
    status, answer = raw(served, b"POST /hooks/distribution HTTP/1.1\r\n"
                                 b"Authorization: Bearer " + SECRET.encode() + b"\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert status == 411 and b"Content-Length" in answer


@pytest.mark.parametrize("body, why", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"\xff\xfe{}", "not JSON"),
    (b"1" * 5000, "not JSON"),
    (b'{"events": [{"action": "push", "target": {"mediaType": '
     b'"application/vnd.oci.image.manifest.v1+json", "tag": "1.3.0", "digest": 1e999, '
     b'"repository": "ferryman/demo"}}]}', "not a string"),
])
def test_body_that_is_no_delivery_gets_400_without_a_traceback(receiver, caplog, body, why):
    client, recorder, _ = receiver
    with caplog.at_level(logging.DEBUG):
        answer = client.post("/hooks/distribution", content=body, headers=bearer())
    assert answer.status_code == 400 and why in answer.json()["error"]
    assert not any(r.exc_info for r in caplog.records) and recorder.sent == []


@pytest.mark.parametrize("stamp", ["9" * 400, "1e999", "nan", "-5", "soon"])
def test_timestamp_that_is_not_unix_seconds_gets_400(receiver, stamp):
    client, recorder, _ = receiver
    body = json.dumps(DISTRIBUTION).encode()
    signature = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    answer = client.post("/hooks/distribution", content=body, headers={
        "X-Ferryman-Signature": f"sha256={signature.hexdigest()}", "X-Ferryman-Timestamp": stamp})
    assert answer.status_code == 400 and "not Unix seconds" in answer.json()["error"]
    assert recorder.sent == []


def test_client_that_sends_nothing_is_dropped_within_seconds(served):
    started = time.monotonic()
    status, _ = raw(served, b"")
    assert status == 408 and time.monotonic() - started < FAST.idle_timeout + 1


def test_delivery_is_accepted_within_seconds_while_500_idle_connections_are_open(make_served):
    served = make_served(Limits())  # the defaults `ferryman webhook serve` runs with
    idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(500)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        answer = post(served.client, "/hooks/distribution", DISTRIBUTION, **bearer())
        took = time.monotonic() - started
    finally:
        for s in idle:
            s.close()
    assert answer.status_code == 202 and took < 3
    assert served.recorder.sent == [("demo", "1.3.0", DIGEST)]


# A 202 means Prefect took the event; a push is remembered only then.


def test_retry_while_the_first_delivery_waits_on_prefect_is_503_not_duplicate(served):
    """The registry retries after its own time-out (2 s here) while Prefect is slow; if that
    retry were told "duplicate" and the first attempt then failed, the push would be lost."""
    recorder = served.recorder
    recorder.hold, recorder.fail = True, 1
    first: dict = {}
    slow = threading.Thread(target=lambda: first.update(
        answer=post(served.client, "/hooks/distribution", DISTRIBUTION, **bearer())))
    slow.start()
    assert recorder.waiting.wait(5)
    with httpx.Client(base_url=str(served.client.base_url), timeout=10) as other:
        retry = post(other, "/hooks/distribution", DISTRIBUTION, **bearer())
    assert retry.status_code == 503 and "being announced" in retry.json()["error"]
    recorder.hold = False
    recorder.go.set()  # ...and the first attempt fails
    slow.join(10)
    assert first["answer"].status_code == 503 and recorder.sent == []
    again = post(served.client, "/hooks/distribution", DISTRIBUTION, **bearer())
    assert again.status_code == 202 and again.json()["handled"][0]["result"] == "announced"
    assert recorder.sent == [("demo", "1.3.0", DIGEST)]


def test_several_pushes_in_one_delivery_resend_only_what_failed(served):
    recorder = served.recorder
    newer = changed(DISTRIBUTION, "events.1.target.tag", "1.4.0")["events"][1]
    newer = changed(newer, "target.digest", "sha256:" + "b" * 64)
    both = {"events": [DISTRIBUTION["events"][1], newer]}
    recorder.fail_tags = {"1.4.0"}
    assert post(served.client, "/hooks/distribution", both, **bearer()).status_code == 503
    again = post(served.client, "/hooks/distribution", both, **bearer())
    assert again.status_code == 202
    assert [h["result"] for h in again.json()["handled"]] == ["duplicate", "announced"]
    assert [tag for _, tag, _ in recorder.sent] == ["1.3.0", "1.4.0"]
