"""What the webhook receiver needs, minus the HTTP server: parse, authenticate, deduplicate.

The receiver (`flows/receiver.py`) authenticates a delivery first (`verify_shared_secret` or
`verify_hmac_sha256`, on the raw body), then parses it with the parser of its sender, maps
each repository to an app with `app_for_repository`, asks the tag policy
(`tasks.tag_policy.admit_tag`), and drops the images `DeliveryDeduplicator` has seen.

Senders and what is read from them:

- CNCF distribution (`docker-registry`) notifications: an envelope `{"events": [...]}`. Only
  `action: push` events whose `target.mediaType` is a manifest (or index) and which carry a
  `target.tag` count: pushing one image also sends push events for each layer and, for a
  multi-platform image, for untagged platform manifests. Delivery id: the event's `id`.
- Docker Hub webhooks: `push_data.tag` and `repository.repo_name`; Docker Hub sends no
  digest and no delivery id, and cannot sign or add headers: give it a URL carrying a token
  (`?token=...`) and check that with `verify_shared_secret`. A URL ends up in proxies' and
  servers' logs, so that token is a secret of its own, which authorizes nothing else.
- Amazon ECR through EventBridge (an API destination): `detail-type: "ECR Image Action"`,
  `detail.action-type: PUSH`, `detail.result: SUCCESS`, with `detail.repository-name`,
  `image-tag`, `image-digest`; delivery id: the event's `id`. The API destination's
  connection adds the shared-secret header.

Signatures (`verify_hmac_sha256`): the hex HMAC-SHA256, under the shared secret, of
`f"{timestamp}."` followed by the raw body, as Stripe signs (`t.body`), in a header as
`sha256=<hex>` or bare `<hex>`. The timestamp (Unix seconds) is required and a timestamp
more than `tolerance_s` from now is refused, so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from tasks.errors import PermanentError
from tasks.registries.specs import DockerHubRegistrySpec
from tasks.spec import ReleaseSpec


class WebhookError(PermanentError):
    """A delivery the receiver cannot use: malformed, or naming an app ambiguously."""


class WebhookAuthError(WebhookError):
    """A delivery whose sender could not be authenticated (never names the secret)."""


@dataclass(frozen=True)
class ImagePushed:
    """One tag pushed to a registry, as a sender reported it."""

    source: str
    """`distribution`, `dockerhub` or `ecr`."""
    registry: str | None
    """The registry host, e.g. `127.0.0.1:5000`, when the sender says."""
    repository: str
    tag: str
    digest: str | None
    delivery_id: str | None
    event_time: datetime | None


_MANIFEST_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
})


def _field(node: Any, path: str, where: str) -> Any:
    """`node[a][b]...` for `path` "a.b"; WebhookError naming `where.path` when absent or empty."""
    for key in path.split("."):
        if not isinstance(node, dict) or node.get(key) in (None, ""):
            raise WebhookError(f"{where}: missing field {path!r}")
        node = node[key]
    return node


def _text(node: Any, path: str, where: str) -> str:
    value = _field(node, path, where)
    if not isinstance(value, str):
        raise WebhookError(f"{where}: field {path!r} is not a string")
    return value


def _optional(node: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if node not in (None, "") else None


def _time(value: Any) -> datetime | None:
    """An RFC 3339 string or Unix seconds as an aware datetime; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, ValueError, OSError):  # NaN, infinity, past year 9999
            return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def parse_distribution(body: dict) -> list[ImagePushed]:
    """The tagged manifest pushes in a CNCF distribution notification envelope."""
    events = _field(body, "events", "distribution notification")
    if not isinstance(events, list):
        raise WebhookError("distribution notification: field 'events' is not a list")
    pushed = []
    for i, event in enumerate(events):
        where = f"distribution notification events[{i}]"
        if _text(event, "action", where) != "push":
            continue
        if _text(event, "target.mediaType", where) not in _MANIFEST_TYPES:
            continue  # a layer (application/octet-stream) or another blob
        tag = _optional(event, "target.tag")
        if tag is None:
            continue  # a manifest pushed by digest, e.g. one platform of an index
        pushed.append(ImagePushed(
            source="distribution",
            registry=_optional(event, "request.host"),
            repository=_text(event, "target.repository", where),
            tag=str(tag),
            digest=_text(event, "target.digest", where),
            delivery_id=_optional(event, "id"),
            event_time=_time(_optional(event, "timestamp")),
        ))
    return pushed


def parse_dockerhub(body: dict) -> list[ImagePushed]:
    """The push a Docker Hub webhook reports (one tag; Docker Hub sends no digest)."""
    where = "Docker Hub webhook"
    return [ImagePushed(
        source="dockerhub",
        registry="docker.io",
        repository=_text(body, "repository.repo_name", where),
        tag=_text(body, "push_data.tag", where),
        digest=None,
        delivery_id=None,
        event_time=_time(_optional(body, "push_data.pushed_at")),
    )]


def parse_ecr_event(body: dict) -> list[ImagePushed]:
    """The push an EventBridge "ECR Image Action" event reports; nothing for other actions.

    Deletions, failed pushes and pushes by digest alone (no `image-tag`) give an empty list.
    """
    where = "ECR event"
    if _text(body, "detail-type", where) != "ECR Image Action":
        return []
    detail = _field(body, "detail", where)
    if _text(detail, "action-type", where + " detail") != "PUSH":
        return []
    if _text(detail, "result", where + " detail") != "SUCCESS":
        return []
    tag = _optional(detail, "image-tag")
    if tag is None:
        return []
    account, region = _optional(body, "account"), _optional(body, "region")
    return [ImagePushed(
        source="ecr",
        registry=f"{account}.dkr.ecr.{region}.amazonaws.com" if account and region else None,
        repository=_text(detail, "repository-name", where + " detail"),
        tag=str(tag),
        digest=_text(detail, "image-digest", where + " detail"),
        delivery_id=_optional(body, "id"),
        event_time=_time(_optional(body, "time")),
    )]


def _configured(secret: str | bytes) -> bytes:
    if not secret:
        raise ValueError("the webhook secret is empty: refusing to authenticate against it")
    return secret.encode() if isinstance(secret, str) else secret


def verify_shared_secret(header_value: str | None, secret: str | bytes) -> None:
    """Accept a delivery whose header (or URL token) is the secret, or `Bearer <secret>`.

    Raises WebhookAuthError otherwise. The compare takes the same time wherever it differs.
    """
    expected = _configured(secret)
    if not header_value:
        raise WebhookAuthError("no shared secret in the delivery")
    given = header_value.strip()
    if given[:7].lower() == "bearer ":
        given = given[7:].strip()
    if not hmac.compare_digest(given.encode(), expected):
        raise WebhookAuthError("the delivery's shared secret is wrong")


_UNIX_SECONDS = re.compile(r"\d{1,12}(\.\d{1,9})?")


def verify_hmac_sha256(
    raw_body: bytes,
    signature_header: str | None,
    secret: str | bytes,
    timestamp: str | None,
    now: float | None = None,
    tolerance_s: float = 300,
) -> None:
    """Accept a delivery signed as the module docstring says.

    Raises WebhookAuthError for a missing or wrong signature, a missing timestamp or one
    outside `tolerance_s`; WebhookError (malformed, not a question of who sent it) for a
    timestamp that is not Unix seconds. `now` (Unix seconds) defaults to the clock; the
    error never carries the secret or the expected signature.
    """
    key = _configured(secret)
    if not signature_header:
        raise WebhookAuthError("no signature in the delivery")
    # Without the timestamp a signature never expires: a captured delivery could be
    # replayed for ever.
    if not timestamp:
        raise WebhookAuthError(
            "a signed delivery needs its timestamp (X-Ferryman-Timestamp, Unix seconds)"
        )
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise WebhookError(f"the signature timestamp {timestamp[:40]!r} is not Unix seconds")
    given = signature_header.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:]
    given = given.lower()
    if len(given) != 64 or any(c not in "0123456789abcdef" for c in given):
        raise WebhookAuthError("the signature is not a hex SHA-256 HMAC ('sha256=<64 hex>')")
    age = (time.time() if now is None else now) - float(timestamp)
    if abs(age) > tolerance_s:
        raise WebhookAuthError(
            f"the signature timestamp is {abs(age):.0f} s "
            f"{'old' if age > 0 else 'in the future'} (at most {tolerance_s:.0f} s allowed)"
        )
    message = f"{timestamp}.".encode() + raw_body
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookAuthError("the delivery's signature does not match its body")


def delivery_key(event: ImagePushed) -> Hashable:
    """What makes two deliveries the same: the image they report, else the delivery id.

    With a digest the key is (repository, tag, digest): a registry's retry, the same push
    reported by a poller too, or a re-push of the very same image all start one release.
    Docker Hub sends no digest: there the delivery id, or else the push time, stands in.
    """
    if event.digest is not None:
        return ("image", event.repository, event.tag, event.digest)
    if event.delivery_id is not None:
        return ("id", event.source, event.delivery_id)
    return ("image", event.repository, event.tag, event.event_time)


class Claim(Enum):
    """What `DeliveryDeduplicator.claim` says of a delivery key."""

    NEW = "new"
    """Announce it now, then call `announced` (it was) or `release` (it was not)."""
    SEEN = "seen"
    """Announced within the TTL: a duplicate."""
    IN_FLIGHT = "in flight"
    """Another delivery of it is being announced right now: ask the sender to come back."""


class DeliveryDeduplicator:
    """Remembers the delivery keys announced in the last `ttl_s` seconds, at most `max_keys`
    of them (oldest go), and the ones being announced now.

    Registries retry a delivery they think failed, and one push may arrive twice. A key is
    remembered only once its event was announced (`announced`): a retry that comes while the
    first attempt still waits on Prefect is told IN_FLIGHT, not SEEN, so that if that first
    attempt fails, the sender's next retry announces it. `clock` (monotonic seconds) is
    injected for tests. Safe to share between the receiver's threads.
    """

    def __init__(self, ttl_s: float = 3600, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_keys < 1:
            raise ValueError("ttl_s must be positive and max_keys at least 1")
        self._ttl, self._max, self._clock = ttl_s, max_keys, clock
        self._seen: OrderedDict[Hashable, float] = OrderedDict()  # key -> announced, oldest first
        self._in_flight: set[Hashable] = set()
        self._lock = threading.Lock()

    def claim(self, key: Hashable) -> Claim:
        """SEEN or IN_FLIGHT for a key announced or being announced; otherwise NEW, and the
        key is in flight until `announced` or `release`."""
        with self._lock:
            now = self._clock()
            while self._seen and next(iter(self._seen.values())) <= now - self._ttl:
                self._seen.popitem(last=False)
            if key in self._seen:
                return Claim.SEEN
            if key in self._in_flight:
                return Claim.IN_FLIGHT
            self._in_flight.add(key)
            return Claim.NEW

    def announced(self, key: Hashable) -> None:
        """Remember `key` as announced, from now for the TTL."""
        with self._lock:
            self._in_flight.discard(key)
            self._seen[key] = self._clock()
            self._seen.move_to_end(key)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)

    def release(self, key: Hashable) -> None:
        """Give up the claim on `key`: its event could not be announced."""
        with self._lock:
            self._in_flight.discard(key)

    def __len__(self) -> int:
        return len(self._seen)


def _path_of(repository: str) -> str:
    """`repository` without a registry host (`127.0.0.1:5000/ferryman/demo` -> `ferryman/demo`).

    Docker's rule: the first part is a host when it has a `.` or `:`, or is `localhost`.
    """
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return repository


def repository_path(spec: ReleaseSpec) -> str:
    """The repository path a registry reports for the spec's image."""
    if isinstance(spec.registry, DockerHubRegistrySpec):
        return f"{spec.registry.namespace}/{spec.image.repository}"
    return spec.image.repository


def app_for_repository(specs: Iterable[ReleaseSpec], repository: str) -> str | None:
    """The app whose image is `repository` (with or without a registry host), or None.

    Raises WebhookError when several specs name the same repository: which to release is
    then a question for a person, not a guess.
    """
    path = _path_of(repository)
    apps = sorted({s.app for s in specs if repository_path(s) == path})
    if len(apps) > 1:
        raise WebhookError(f"repository {path!r} is the image of several apps: {apps}")
    return apps[0] if apps else None
