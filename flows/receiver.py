"""The webhook receiver: registries' push notifications in, `ferryman.image.pushed` events out.

`ferryman webhook serve` (the local stack starts it on 127.0.0.1:8470, and its registry
notifies it). For each tag a sender reports, the receiver finds the app whose image it is
(the specs under `deployments/`), applies the app's tag policy against the version that runs
now, and emits a Prefect event; the deployment trigger in `prefect.yaml` turns that event
into a release run (`trigger=webhook`, the tag as version, the digest to deploy).

Endpoints (POST, JSON bodies of at most 1 MiB; HTTP itself, its limits and time-outs are
`flows.webhook_http`'s):

- `/hooks/distribution`: the CNCF distribution registry's notifications;
- `/hooks/ecr`: EventBridge "ECR Image Action" events, through an API destination whose
  connection adds the secret header;
- `/hooks/dockerhub`: Docker Hub webhooks, only when the receiver has a Docker Hub token:
  Docker Hub cannot add headers, so it carries that token in the URL, `?token=<token>`;
- `GET /healthz`: 200 while serving.

Authentication comes first, on the raw body, and a delivery that fails it changes nothing
and gets 401. Each kind of sender has its own secret, so that the one that travels in URLs
(and so in proxies' logs) opens nothing else: `/hooks/distribution` and `/hooks/ecr` take
the shared secret as `Authorization: Bearer <secret>` or `X-Ferryman-Token`, or an
`X-Ferryman-Signature` HMAC-SHA256 of `X-Ferryman-Timestamp` and the body under it (the
timestamp required, within 5 minutes; `tasks.webhooks.verify_hmac_sha256`);
`/hooks/dockerhub` takes only its own URL token.

A 202 means Prefect's API took the event. A delivery already announced (the same image:
repository, tag and digest) within an hour is answered 202 and not emitted again; one whose
event is being handed to Prefect right now, or could not be, gets 503, so the registry sends
it again and it is not lost.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from http import HTTPStatus
from pathlib import Path

from flows import SPECS
from flows.pushed import EVENT, emit_pushed, event_id, running_version
from flows.webhook_http import (
    Headers,
    HttpRequest,
    Limits,
    Reply,
    WebhookServer,
    Work,
    limits_for_this_process,
)
from tasks.errors import EventNotSentError, FerrymanError, SpecError
from tasks.spec import ReleaseSpec, load_spec, spec_files
from tasks.tag_policy import admit_tag
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


@dataclass(frozen=True)
class Endpoint:
    """One sender's endpoint: how its body is read, and whether it authenticates by URL."""

    parse: Callable[[dict], list[ImagePushed]]
    url_token: bool = False
    """Docker Hub: `?token=` with the Docker Hub token, and nothing else."""


ENDPOINTS = {
    "/hooks/distribution": Endpoint(parse_distribution),
    "/hooks/dockerhub": Endpoint(parse_dockerhub, url_token=True),
    "/hooks/ecr": Endpoint(parse_ecr_event),
}
log = logging.getLogger("ferryman.webhook")


@dataclass(frozen=True)
class Handled:
    """What became of one reported tag: `announced` (event emitted), `duplicate`, `ignored`."""

    repository: str
    tag: str
    result: str
    detail: str
    app: str | None = None


def read_secret(secret_file: str | None, env: str = "FERRYMAN_WEBHOOK_SECRET",
                option: str = "--secret-file") -> str | None:
    """A secret: the file's content, else `$env`; None when neither is given.

    Raises SpecError for a file that cannot be read or is empty.
    """
    if secret_file:
        try:
            secret = Path(secret_file).read_text().strip()
        except OSError as e:
            raise SpecError(f"cannot read the secret file {secret_file}: {e.strerror}") \
                from None
        if not secret:
            raise SpecError(f"the secret file {secret_file} ({option}) is empty")
        return secret
    return os.environ.get(env, "").strip() or None


def read_secrets(secret_file: str | None, dockerhub_token_file: str | None
                 ) -> tuple[str, str | None]:
    """The receiver's secret (required) and Docker Hub token (optional), from their files or
    $FERRYMAN_WEBHOOK_SECRET and $FERRYMAN_DOCKERHUB_TOKEN; SpecError naming what is wrong."""
    secret = read_secret(secret_file)
    if secret is None:
        raise SpecError("no webhook secret: pass --secret-file or set FERRYMAN_WEBHOOK_SECRET")
    token = read_secret(dockerhub_token_file, "FERRYMAN_DOCKERHUB_TOKEN",
                        "--dockerhub-token-file")
    return secret, token


def authenticate(endpoint: Endpoint, request: HttpRequest, secret: str,
                 dockerhub_token: str | None) -> None:
    """Raise WebhookAuthError unless the delivery carries its endpoint's credential.

    WebhookError (a 400) for a signature timestamp that is not Unix seconds.
    """
    url_token = (request.query.get("token") or [None])[-1]
    if endpoint.url_token:
        assert dockerhub_token is not None  # `admit` answers 404 without one
        verify_shared_secret(url_token, dockerhub_token)
        return
    headers = request.headers
    signature = headers.get("X-Ferryman-Signature")
    if signature is not None:
        verify_hmac_sha256(request.body, signature, secret, headers.get("X-Ferryman-Timestamp"))
        return
    given = headers.get("Authorization") or headers.get("X-Ferryman-Token")
    if given is None and url_token is not None:
        raise WebhookAuthError(
            "a token in the URL is taken only by /hooks/dockerhub; send the secret in a header"
        )
    verify_shared_secret(given, secret)


def read_json(body: bytes) -> object:
    """The delivery's JSON document; WebhookError for anything that is not one."""
    try:
        return json.loads(body)
    except RecursionError:
        raise WebhookError("the JSON body is nested too deeply") from None
    except ValueError as e:  # not UTF-8, not JSON, a number too long to read
        raise WebhookError(f"the body is not JSON: {e}") from None


class Receiver:
    """Everything but HTTP: authenticate, parse, map to an app, decide, deduplicate, emit.

    `secret` authenticates the senders that send headers (distribution, ECR through
    EventBridge); `dockerhub_token`, which must differ from it, the Docker Hub endpoint (off
    without one). `emit` and `current` are injected for tests (the real ones talk to Prefect
    and the target); `specs` is the folder of release specs, read again on every delivery so
    that a new app needs no restart.
    """

    def __init__(
        self,
        secret: str,
        specs: Path,
        emit: Callable[[str, ImagePushed, ReleaseSpec, uuid.UUID], object] = emit_pushed,
        current: Callable[[ReleaseSpec], str | None] = running_version,
        deduplicator: DeliveryDeduplicator | None = None,
        dockerhub_token: str | None = None,
    ) -> None:
        if not secret:
            raise SpecError("the webhook receiver needs a non-empty secret")
        if dockerhub_token is not None and dockerhub_token == secret:
            raise SpecError("the Docker Hub token must differ from the webhook secret: it is "
                            "sent in URLs, and must not open the other endpoints")
        self._secret, self._dockerhub_token, self._specs = secret, dockerhub_token, specs
        self._emit, self._current = emit, current
        self._seen = deduplicator or DeliveryDeduplicator()

    def specs(self) -> list[ReleaseSpec]:
        loaded = []
        for file in spec_files(self._specs):
            try:
                loaded.append(load_spec(file))
            except SpecError as e:
                log.warning("skipping a spec that does not load: %s", str(e).splitlines()[0])
        return loaded

    def admit(self, request: HttpRequest) -> Reply | Work:
        """Answer what needs no Prefect and no target (unknown path, refused sender, a body
        that is no delivery), or return the work that announces what the delivery reports.

        Called on the HTTP front's event loop: nothing here may block.
        """
        if request.method == "GET":
            if request.path == "/healthz":
                return HTTPStatus.OK, {"ok": True}
            return HTTPStatus.NOT_FOUND, {"error": "not found"}
        endpoint = ENDPOINTS.get(request.path)
        if endpoint is None:
            return HTTPStatus.NOT_FOUND, {"error": f"no endpoint {request.path} (use one of "
                                                   f"{', '.join(ENDPOINTS)})"}
        if endpoint.url_token and self._dockerhub_token is None:
            return HTTPStatus.NOT_FOUND, {"error": f"{request.path} is off: the receiver was "
                                                   "started without a Docker Hub token"}
        try:
            authenticate(endpoint, request, self._secret, self._dockerhub_token)
        except WebhookAuthError as e:
            log.warning("refused a delivery to %s: %s", request.path, e)
            return HTTPStatus.UNAUTHORIZED, {"error": str(e)}
        except WebhookError as e:
            return HTTPStatus.BAD_REQUEST, {"error": str(e)}
        try:
            pushed = endpoint.parse(read_json(request.body))
        except WebhookError as e:
            return HTTPStatus.BAD_REQUEST, {"error": f"cannot read the delivery: {e}"}
        if not pushed:
            return HTTPStatus.ACCEPTED, {"handled": []}
        return partial(self.announce, pushed)

    def handle(self, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: bytes) -> Reply:
        """The status and JSON answer for one POST delivery, all steps at once (tests, tools)."""
        request = HttpRequest("POST", path, query,
                              Headers({k.lower(): v for k, v in headers.items()}), body)
        admitted = self.admit(request)
        return admitted() if callable(admitted) else admitted

    def announce(self, pushed: list[ImagePushed]) -> Reply:
        """Announce each reported tag the policy releases; 202, or 503 when one could not be
        (those that could are remembered, so the sender's retry announces only the rest)."""
        try:
            specs = self.specs()
            handled = [self._one(event, specs) for event in pushed]
        except EventNotSentError as e:
            log.warning("answered 503: %s", e)
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(e)}
        for h in handled:
            log.info("%s:%s -> %s (%s)", h.repository, h.tag, h.result, h.detail)
        return HTTPStatus.ACCEPTED, {"handled": [asdict(h) for h in handled]}

    def _one(self, pushed: ImagePushed, specs: list[ReleaseSpec]) -> Handled:
        def say(result: str, detail: str, app: str | None = None) -> Handled:
            return Handled(pushed.repository, pushed.tag, result, detail, app)

        try:
            app = app_for_repository(specs, pushed.repository)
        except WebhookError as e:
            return say("ignored", str(e))
        if app is None:
            return say("ignored", "no release spec has this repository as its image")
        spec = next(s for s in specs if s.app == app)
        try:
            current = self._current(spec)
        except FerrymanError as e:
            # The release run checks the policy again under the app's lock.
            log.warning("cannot read what %s runs (%s): checking the tag policy without it",
                        app, e)
            current = None
        verdict = admit_tag(spec.tag_policy, pushed.tag, current)
        if not verdict.release:
            return say("ignored", verdict.reason, app)
        key = delivery_key(pushed)
        claim = self._seen.claim(key)
        if claim is Claim.SEEN:
            return say("duplicate", "this image was announced before: no second release", app)
        if claim is Claim.IN_FLIGHT:
            raise EventNotSentError(f"{pushed.repository}:{pushed.tag} is being announced by "
                                    "an earlier delivery: send it again")
        uid = event_id(key)
        try:
            self._emit(app, pushed, spec, uid)
        except Exception as e:  # noqa: BLE001 - any failure to hand it on: let the sender retry
            self._seen.release(key)
            raise EventNotSentError(
                f"could not emit the event for {pushed.repository}:{pushed.tag}: "
                f"{e.__class__.__name__}: {e}"
            ) from None
        self._seen.announced(key)
        return say("announced", f"{verdict.reason}; event {EVENT} {uid}", app)


def make_server(host: str, port: int, receiver: Receiver,
                limits: Limits | None = None) -> WebhookServer:
    """An HTTP server (bound, not yet serving) that hands every request to `receiver`."""
    return WebhookServer(host, port, receiver, limits or Limits())


def serve(host: str, port: int, secret: str, specs: str | None = None,
          dockerhub_token: str | None = None) -> None:
    """Serve until interrupted (`ferryman webhook serve`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    receiver = Receiver(secret, Path(specs) if specs else SPECS,
                        dockerhub_token=dockerhub_token)
    server = make_server(host, port, receiver, limits_for_this_process(Limits()))
    endpoints = [p for p, e in ENDPOINTS.items() if dockerhub_token or not e.url_token]
    log.info("webhook receiver on http://%s:%d (%s)", host, server.server_address[1],
             ", ".join(endpoints))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
