"""The webhook receiver over real HTTP on 127.0.0.1, with the Prefect emitter and the target
read replaced by recorders (the end-to-end path through Prefect is tests/e2e/test_triggers.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest

from flows.receiver import Receiver, make_server
from tests.helpers import changed, demo_spec_copy
from tests.test_webhooks import DIGEST, DISTRIBUTION, DOCKERHUB, ECR

SECRET = "s3cret-for-tests-only"


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
    """Stands in for Prefect: records each event; `fail` makes the next sends fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str | None]] = []
        self.fail = 0

    def __call__(self, app, pushed, spec, event_id) -> bool:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Prefect is down")
        self.sent.append((app, pushed.tag, pushed.digest))
        return True


@pytest.fixture()
def receiver(tmp_path):
    specs = tmp_path / "specs"
    write_spec(specs, "demo", "ferryman/demo", {"url": "127.0.0.1:5000"}, {"semver": ">=1.0.0"})
    write_spec(specs, "shop", "demo", {"kind": "dockerhub", "namespace": "acme"}, {})
    recorder = Recorder()
    running = {"demo": "1.2.0", "shop": None}
    server = make_server("127.0.0.1", 0, Receiver(
        SECRET, specs, emit=recorder, current=lambda spec: running[spec.app]
    ))
    # A short poll interval: shutdown() waits for the loop to look (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client, recorder, running
    server.shutdown()
    server.server_close()


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


def test_dockerhub_webhook_with_the_token_in_the_url_is_accepted(receiver, caplog):
    client, recorder, _ = receiver
    with caplog.at_level(logging.INFO, logger="ferryman.webhook"):
        answer = post(client, f"/hooks/dockerhub?token={SECRET}", DOCKERHUB)
    assert answer.status_code == 202
    assert recorder.sent == [("shop", "1.3.0", None)]
    assert SECRET not in caplog.text  # the request log shows the path without its query


def test_ecr_event_with_the_secret_header_is_accepted(receiver):
    client, recorder, _ = receiver
    answer = post(client, "/hooks/ecr", ECR, **{"X-Ferryman-Token": SECRET})
    assert answer.status_code == 202
    assert recorder.sent == [("demo", "1.3.0", DIGEST)]


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
