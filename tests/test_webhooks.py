"""The webhook receiver's pure parts: parsing each sender, authenticating, deduplicating."""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tasks.spec import parse_spec
from tasks.webhooks import (
    Claim,
    DeliveryDeduplicator,
    ImagePushed,
    WebhookAuthError,
    WebhookError,
    app_for_repository,
    delivery_key,
    parse_distribution,
    parse_dockerhub,
    parse_ecr_event,
    verify_hmac_sha256,
    verify_shared_secret,
)
from tests.helpers import changed

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "deployments" / "demo" / "release.yaml"

DIGEST = "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf"
INSTANCE = "c4d9e2a8-8d1e-4f58-b1bb-0a1d2e3f4a5b"
LAYER = "sha256:c04b14da8d1441880ed3fe6106fb2cc6fa1c9661846ac0266b8a5ec8edf37b7c"

# What CNCF distribution 2.8 (Debian's docker-registry) POSTs with Content-Type
# application/vnd.docker.distribution.events.v1+json after `docker push`: a push event for
# the layer blob (no tag), then one for the tagged manifest.
DISTRIBUTION = {
    "events": [
        {
            "id": "8a1f3c52-34e0-4bd4-9f0e-2d3a6b1c0e11",
            "timestamp": "2026-06-02T00:12:03.218331029Z",
            "action": "push",
            "target": {
                "mediaType": "application/octet-stream",
                "size": 2107098,
                "digest": LAYER,
                "length": 2107098,
                "repository": "ferryman/demo",
                "url": f"http://127.0.0.1:5000/v2/ferryman/demo/blobs/{LAYER}",
            },
            "request": {
                "id": "0f4b53c5-7c9e-4c9b-a2d7-7f9b0c2d5e01",
                "addr": "127.0.0.1:41822",
                "host": "127.0.0.1:5000",
                "method": "PUT",
                "useragent": "docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84",
            },
            "actor": {"name": "ferryman"},
            "source": {"addr": "ferryman-host:5000", "instanceID": INSTANCE},
        },
        {
            "id": "320678d8-ca14-430f-8bb6-4ca139cd83f7",
            "timestamp": "2026-06-02T00:12:03.402973972Z",
            "action": "push",
            "target": {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "size": 528,
                "digest": DIGEST,
                "length": 528,
                "repository": "ferryman/demo",
                "url": f"http://127.0.0.1:5000/v2/ferryman/demo/manifests/{DIGEST}",
                "tag": "1.3.0",
            },
            "request": {
                "id": "6df24a34-0959-4923-81ca-14f09767db19",
                "addr": "127.0.0.1:41822",
                "host": "127.0.0.1:5000",
                "method": "PUT",
                "useragent": "docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84",
            },
            "actor": {"name": "ferryman"},
            "source": {"addr": "ferryman-host:5000", "instanceID": INSTANCE},
        },
    ]
}

# Docker Hub's webhook body (docs.docker.com/docker-hub/repos/manage/webhooks/).
DOCKERHUB = {
    "callback_url": "https://registry.hub.docker.com/u/acme/demo/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
    "push_data": {"pushed_at": 1780359123, "pusher": "acme-ci", "tag": "1.3.0"},
    "repository": {
        "comment_count": 0,
        "date_created": 1767225600,
        "description": "",
        "is_official": False,
        "is_private": True,
        "is_trusted": False,
        "name": "demo",
        "namespace": "acme",
        "owner": "acme",
        "repo_name": "acme/demo",
        "repo_url": "https://registry.hub.docker.com/u/acme/demo/",
        "star_count": 0,
        "status": "Active",
    },
}

# An EventBridge "ECR Image Action" event, as an API destination delivers it.
ECR = {
    "version": "0",
    "id": "13cde686-328b-6117-af20-0e5566167482",
    "detail-type": "ECR Image Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2026-06-02T00:12:04Z",
    "region": "eu-central-1",
    "resources": [],
    "detail": {
        "result": "SUCCESS",
        "repository-name": "ferryman/demo",
        "image-digest": DIGEST,
        "action-type": "PUSH",
        "image-tag": "1.3.0",
        "manifest-media-type": "application/vnd.docker.distribution.manifest.v2+json",
    },
}


# CNCF distribution.


def test_distribution_tagged_manifest_push_is_read_and_layer_push_skipped():
    assert parse_distribution(DISTRIBUTION) == [
        ImagePushed(
            source="distribution",
            registry="127.0.0.1:5000",
            repository="ferryman/demo",
            tag="1.3.0",
            digest=DIGEST,
            delivery_id="320678d8-ca14-430f-8bb6-4ca139cd83f7",
            event_time=datetime(2026, 6, 2, 0, 12, 3, 402973, tzinfo=UTC),
        )
    ]


def test_distribution_manifest_pushed_by_digest_alone_is_skipped():
    assert parse_distribution(changed(DISTRIBUTION, "events.1.target.tag", KeyError)) == []


@pytest.mark.parametrize("action", ["pull", "delete", "mount"])
def test_distribution_events_other_than_push_are_skipped(action):
    assert parse_distribution(changed(DISTRIBUTION, "events.1.action", action)) == []


def test_distribution_oci_index_push_is_read():
    body = changed(DISTRIBUTION, "events.1.target.mediaType",
                   "application/vnd.oci.image.index.v1+json")
    assert [p.tag for p in parse_distribution(body)] == ["1.3.0"]


@pytest.mark.parametrize(
    "path, message",
    [
        ("events", "missing field 'events'"),
        ("events.1.target.digest", "events[1]: missing field 'target.digest'"),
        ("events.1.target.repository", "events[1]: missing field 'target.repository'"),
        ("events.1.target.mediaType", "events[1]: missing field 'target.mediaType'"),
        ("events.0.action", "events[0]: missing field 'action'"),
    ],
)
def test_malformed_distribution_notification_names_the_missing_field(path, message):
    with pytest.raises(WebhookError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_distribution(changed(DISTRIBUTION, path, KeyError))


def test_distribution_events_that_are_not_a_list_are_refused():
    with pytest.raises(WebhookError, match="'events' is not a list"):
        parse_distribution({"events": {"action": "push"}})


# Docker Hub.


def test_dockerhub_push_is_read_without_a_digest():
    assert parse_dockerhub(DOCKERHUB) == [
        ImagePushed(
            source="dockerhub",
            registry="docker.io",
            repository="acme/demo",
            tag="1.3.0",
            digest=None,
            delivery_id=None,
            event_time=datetime.fromtimestamp(1780359123, UTC),
        )
    ]


@pytest.mark.parametrize("path", ["push_data.tag", "repository.repo_name", "push_data"])
def test_malformed_dockerhub_webhook_names_the_missing_field(path):
    with pytest.raises(WebhookError, match=f"missing field '{path}"):
        parse_dockerhub(changed(DOCKERHUB, path, KeyError))


# ECR via EventBridge.


def test_ecr_image_action_push_is_read():
    assert parse_ecr_event(ECR) == [
        ImagePushed(
            source="ecr",
            registry="123456789012.dkr.ecr.eu-central-1.amazonaws.com",
            repository="ferryman/demo",
            tag="1.3.0",
            digest=DIGEST,
            delivery_id="13cde686-328b-6117-af20-0e5566167482",
            event_time=datetime(2026, 6, 2, 0, 12, 4, tzinfo=UTC),
        )
    ]


@pytest.mark.parametrize(
    "path, value",
    [
        ("detail.action-type", "DELETE"),
        ("detail.result", "FAILURE"),
        ("detail.image-tag", KeyError),  # pushed by digest alone
        ("detail-type", "ECR Image Scan"),
    ],
)
def test_ecr_events_that_are_not_tagged_successful_pushes_are_skipped(path, value):
    assert parse_ecr_event(changed(ECR, path, value)) == []


@pytest.mark.parametrize(
    "path, message",
    [
        ("detail-type", "missing field 'detail-type'"),
        ("detail", "missing field 'detail'"),
        ("detail.repository-name", "missing field 'repository-name'"),
        ("detail.image-digest", "missing field 'image-digest'"),
        ("detail.action-type", "missing field 'action-type'"),
    ],
)
def test_malformed_ecr_event_names_the_missing_field(path, message):
    with pytest.raises(WebhookError, match=message):
        parse_ecr_event(changed(ECR, path, KeyError))


def test_webhook_errors_are_permanent():
    from tasks.errors import PermanentError

    assert issubclass(WebhookError, PermanentError) and issubclass(WebhookAuthError, WebhookError)


# Authentication.

SECRET = "s3cr3t-webhook-key"
BODY = json.dumps(DISTRIBUTION).encode()
NOW = 1780359123.0


def signed(body: bytes, secret: str = SECRET, timestamp: str | None = None) -> str:
    message = body if timestamp is None else f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_shared_secret_is_accepted_bare_or_as_bearer_token():
    verify_shared_secret(SECRET, SECRET)
    verify_shared_secret(f"Bearer {SECRET}", SECRET)


@pytest.mark.parametrize("given", ["wrong", "", None, SECRET + "x", SECRET[:-1]])
def test_wrong_or_missing_shared_secret_is_refused_without_naming_it(given):
    with pytest.raises(WebhookAuthError) as e:
        verify_shared_secret(given, SECRET)
    assert SECRET not in str(e.value)


def test_empty_configured_secret_authenticates_nobody():
    with pytest.raises(ValueError, match="secret is empty"):
        verify_shared_secret("", "")


TS = str(int(NOW) - 10)


def test_hmac_signature_is_accepted_with_or_without_prefix():
    for header in ("sha256=" + signed(BODY, timestamp=TS), signed(BODY, timestamp=TS),
                   signed(BODY, timestamp=TS).upper()):
        verify_hmac_sha256(BODY, header, SECRET, TS, now=NOW)


def test_hmac_signature_over_another_body_is_refused_without_leaking_secrets():
    expected = signed(BODY, timestamp=TS)
    with pytest.raises(WebhookAuthError, match="does not match its body") as e:
        verify_hmac_sha256(BODY + b" ", "sha256=" + expected, SECRET, TS, now=NOW)
    assert SECRET not in str(e.value) and signed(BODY + b" ", timestamp=TS) not in str(e.value)


def test_hmac_signature_with_another_secret_is_refused():
    with pytest.raises(WebhookAuthError):
        verify_hmac_sha256(BODY, signed(BODY, secret="other", timestamp=TS), SECRET, TS, now=NOW)


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha256=zz" + "0" * 62, "abc"])
def test_missing_or_malformed_signature_is_refused(header):
    with pytest.raises(WebhookAuthError):
        verify_hmac_sha256(BODY, header, SECRET, TS, now=NOW)


def test_timestamped_signature_covers_timestamp_and_body():
    verify_hmac_sha256(BODY, signed(BODY, timestamp=TS), SECRET, timestamp=TS, now=NOW)
    with pytest.raises(WebhookAuthError, match="does not match"):  # the body alone is not enough
        verify_hmac_sha256(BODY, signed(BODY), SECRET, timestamp=TS, now=NOW)


@pytest.mark.parametrize("timestamp", [None, ""])
def test_signature_without_a_timestamp_is_refused(timestamp):
    """An untimed signature would never expire: the delivery could be replayed for ever."""
    with pytest.raises(WebhookAuthError, match="needs its timestamp"):
        verify_hmac_sha256(BODY, signed(BODY), SECRET, timestamp, now=NOW)


def test_replayed_timestamp_is_refused():
    ts = str(int(NOW) - 301)
    with pytest.raises(WebhookAuthError, match="301 s old"):
        verify_hmac_sha256(BODY, signed(BODY, timestamp=ts), SECRET, timestamp=ts, now=NOW)


def test_timestamp_from_the_future_is_refused():
    ts = str(int(NOW) + 600)
    with pytest.raises(WebhookAuthError, match="in the future"):
        verify_hmac_sha256(BODY, signed(BODY, timestamp=ts), SECRET, timestamp=ts, now=NOW)


@pytest.mark.parametrize("timestamp", [
    "yesterday", "nan", "inf", "-1", "1e9", "9" * 400, " 1780359113", "0x6a1b", "1780359113.",
])
def test_timestamp_that_is_not_unix_seconds_is_malformed_not_an_auth_failure(timestamp):
    with pytest.raises(WebhookError, match="not Unix seconds") as e:
        verify_hmac_sha256(BODY, signed(BODY, timestamp=timestamp), SECRET, timestamp, now=NOW)
    assert not isinstance(e.value, WebhookAuthError)


# Deduplication.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_announced_delivery_is_seen_after():
    dedupe = DeliveryDeduplicator(clock=Clock())
    key = delivery_key(parse_distribution(DISTRIBUTION)[0])
    assert dedupe.claim(key) is Claim.NEW
    dedupe.announced(key)
    assert dedupe.claim(key) is Claim.SEEN


def test_delivery_being_announced_is_in_flight_not_seen():
    """A registry's retry while Prefect is slow must not be told 'duplicate': the first
    attempt may still fail."""
    dedupe = DeliveryDeduplicator(clock=Clock())
    assert dedupe.claim("a") is Claim.NEW
    assert dedupe.claim("a") is Claim.IN_FLIGHT
    dedupe.release("a")  # the first attempt could not announce it
    assert dedupe.claim("a") is Claim.NEW  # so the next retry does


def test_delivery_is_forgotten_after_the_ttl():
    clock = Clock()
    dedupe = DeliveryDeduplicator(ttl_s=60, clock=clock)
    dedupe.claim("a")
    dedupe.announced("a")
    clock.now += 59
    assert dedupe.claim("a") is Claim.SEEN
    clock.now += 2  # 61 s after it was announced
    assert dedupe.claim("a") is Claim.NEW


def test_oldest_keys_go_when_the_deduplicator_is_full():
    dedupe = DeliveryDeduplicator(max_keys=2, clock=Clock())
    for key in ("a", "b", "c"):
        dedupe.claim(key)
        dedupe.announced(key)
    assert len(dedupe) == 2
    assert dedupe.claim("c") is Claim.SEEN and dedupe.claim("a") is Claim.NEW


def test_same_image_reported_with_another_delivery_id_is_the_same_delivery():
    event = parse_distribution(DISTRIBUTION)[0]
    again = parse_distribution(changed(DISTRIBUTION, "events.1.id", "another-delivery"))[0]
    assert delivery_key(event) == delivery_key(again)
    assert delivery_key(event) == ("image", "ferryman/demo", "1.3.0", DIGEST)


def test_another_digest_under_the_same_tag_is_a_new_delivery():
    event = parse_distribution(DISTRIBUTION)[0]
    moved = parse_distribution(changed(DISTRIBUTION, "events.1.target.digest", LAYER))[0]
    assert delivery_key(event) != delivery_key(moved)


def test_delivery_key_without_digest_is_the_delivery_id():
    event = parse_dockerhub(DOCKERHUB)[0]
    with_id = ImagePushed(**{**event.__dict__, "delivery_id": "hub-1"})
    assert delivery_key(with_id) == ("id", "dockerhub", "hub-1")


@pytest.mark.parametrize("pushed_at", [1e300, float("inf"), float("nan"), -1e20, 10**30])
def test_dockerhub_push_time_out_of_range_is_left_out_not_a_crash(pushed_at):
    [event] = parse_dockerhub(changed(DOCKERHUB, "push_data.pushed_at", pushed_at))
    assert event.event_time is None


def test_dockerhub_tag_pushed_again_later_is_a_new_delivery():
    first = delivery_key(parse_dockerhub(DOCKERHUB)[0])
    repeat = delivery_key(parse_dockerhub(DOCKERHUB)[0])
    later = delivery_key(parse_dockerhub(changed(DOCKERHUB, "push_data.pushed_at", 1780369123))[0])
    assert first == repeat and first != later


# Repository -> app.


def spec(app: str, repository: str, registry: dict):
    data = yaml.safe_load(DEMO.read_text())
    data["app"] = app
    data["image"]["repository"] = repository
    data["registry"] = registry
    return parse_spec(data, DEMO.parent, f"{app}.yaml")


@pytest.fixture(scope="module")
def specs():
    return [
        spec("demo", "ferryman/demo", {"url": "127.0.0.1:5000"}),
        spec("shop", "demo", {"kind": "dockerhub", "namespace": "acme"}),
        spec("billing", "team/billing", {"kind": "ecr", "region": "eu-central-1"}),
    ]


@pytest.mark.parametrize(
    "repository, app",
    [
        ("ferryman/demo", "demo"),
        ("127.0.0.1:5000/ferryman/demo", "demo"),
        ("localhost/ferryman/demo", "demo"),
        ("acme/demo", "shop"),  # Docker Hub: <namespace>/<image.repository>
        ("docker.io/acme/demo", "shop"),
        ("123456789012.dkr.ecr.eu-central-1.amazonaws.com/team/billing", "billing"),
        ("demo", None),
        ("ferryman/other", None),
    ],
)
def test_repository_maps_to_the_app_whose_image_it_is(specs, repository, app):
    assert app_for_repository(specs, repository) == app


def test_repository_of_two_apps_is_refused(specs):
    twin = spec("demo-two", "ferryman/demo", {"url": "127.0.0.1:5000"})
    with pytest.raises(WebhookError, match=r"several apps: \['demo', 'demo-two'\]"):
        app_for_repository([*specs, twin], "ferryman/demo")
