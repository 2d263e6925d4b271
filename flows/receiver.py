"""The webhook receiver: registries' push notifications in, `ferryman.image.pushed` events out.

`ferryman webhook serve` (the local stack starts it on 127.0.0.1:8470, and its registry
notifies it). For each tag a sender reports, the receiver finds the app whose image it is
(the specs under `deployments/`), applies the app's tag policy against the version that runs
now, and emits a Prefect event; the deployment trigger in `prefect.yaml` turns that event
into a release run (`trigger=webhook`, the tag as version, the digest to deploy).

Endpoints (POST, JSON bodies of at most 1 MiB):

- `/hooks/distribution`: the CNCF distribution registry's notifications;
- `/hooks/dockerhub`: Docker Hub webhooks (Docker Hub cannot add headers: put the secret in
  the URL, `?token=<secret>`);
- `/hooks/ecr`: EventBridge "ECR Image Action" events, through an API destination whose
  connection adds the secret header;
- `GET /healthz`: 200 while serving.

Authentication comes first, on the raw body, and a delivery that fails it changes nothing
and gets 401: with an `X-Ferryman-Signature` header, the HMAC-SHA256 of the body (and of
`X-Ferryman-Timestamp` when sent, within 5 minutes; `tasks.webhooks.verify_hmac_sha256`);
otherwise the shared secret as `Authorization: Bearer <secret>`, `X-Ferryman-Token` or
`?token=`. A delivery already seen (the same image: repository, tag and digest) within an
hour is answered 202 and not emitted again. If the event cannot be handed to Prefect the
answer is 503, so the registry sends it again.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flows import SPECS
from flows.pushed import EVENT, emit_pushed, event_id, running_version
from tasks.errors import EventNotSentError, FerrymanError, SpecError
from tasks.spec import ReleaseSpec, load_spec, spec_files
from tasks.tag_policy import admit_tag
from tasks.webhooks import (
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

MAX_BODY = 1 << 20
PARSERS: dict[str, Callable[[dict], list[ImagePushed]]] = {
    "/hooks/distribution": parse_distribution,
    "/hooks/dockerhub": parse_dockerhub,
    "/hooks/ecr": parse_ecr_event,
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


def read_secret(secret_file: str | None) -> str:
    """The shared secret: the file's content, else $FERRYMAN_WEBHOOK_SECRET; never empty."""
    if secret_file:
        try:
            secret = Path(secret_file).read_text().strip()
        except OSError as e:
            raise SpecError(f"cannot read the webhook secret file {secret_file}: {e.strerror}") \
                from None
    else:
        secret = os.environ.get("FERRYMAN_WEBHOOK_SECRET", "").strip()
    if not secret:
        raise SpecError("no webhook secret: pass --secret-file or set FERRYMAN_WEBHOOK_SECRET")
    return secret


def authenticate(headers: Any, query: dict[str, list[str]], body: bytes, secret: str) -> None:
    """Raise WebhookAuthError unless the delivery carries a valid signature or the secret."""
    signature = headers.get("X-Ferryman-Signature")
    if signature is not None:
        verify_hmac_sha256(body, signature, secret, headers.get("X-Ferryman-Timestamp"))
        return
    given = (headers.get("Authorization") or headers.get("X-Ferryman-Token")
             or (query.get("token") or [None])[0])
    verify_shared_secret(given, secret)


class Receiver:
    """Everything but HTTP: authenticate, parse, map to an app, decide, deduplicate, emit.

    `emit` and `current` are injected for tests (the real ones talk to Prefect and the
    target); `specs` is the folder of release specs, read again on every delivery so that a
    new app needs no restart.
    """

    def __init__(
        self,
        secret: str,
        specs: Path,
        emit: Callable[[str, ImagePushed, ReleaseSpec, uuid.UUID], bool] = emit_pushed,
        current: Callable[[ReleaseSpec], str | None] = running_version,
        deduplicator: DeliveryDeduplicator | None = None,
    ) -> None:
        if not secret:
            raise SpecError("the webhook receiver needs a non-empty secret")
        self._secret, self._specs = secret, specs
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

    def handle(self, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, dict]:
        """The HTTP status and JSON answer for one delivery."""
        parser = PARSERS.get(path)
        if parser is None:
            return HTTPStatus.NOT_FOUND, {"error": f"no endpoint {path} (use one of "
                                                   f"{', '.join(PARSERS)})"}
        try:
            authenticate(headers, query, body, self._secret)
        except WebhookAuthError as e:
            log.warning("refused a delivery to %s: %s", path, e)
            return HTTPStatus.UNAUTHORIZED, {"error": str(e)}
        try:
            document = json.loads(body)
            pushed = parser(document)
        except (ValueError, WebhookError) as e:
            return HTTPStatus.BAD_REQUEST, {"error": f"cannot read the delivery: {e}"}
        try:
            specs = self.specs() if pushed else []
            handled = [self._one(event, specs) for event in pushed]
        except EventNotSentError as e:
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
        if self._seen.seen_before(key):
            return say("duplicate", "this image was reported before: no second release", app)
        uid = event_id(key)
        try:
            sent = self._emit(app, pushed, spec, uid)
        except Exception as e:  # noqa: BLE001 - any failure to hand it on: let the sender retry
            sent, why = False, f"{e.__class__.__name__}: {e}"
        else:
            why = "the Prefect API does not answer (or PREFECT_API_URL is not set)"
        if not sent:
            self._seen.forget(key)
            raise EventNotSentError(
                f"could not emit the event for {pushed.repository}:{pushed.tag}: {why}"
            )
        return say("announced", f"{verdict.reason}; event {EVENT} {uid}", app)


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver
    server_version = "ferryman-webhook"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if urlsplit(self.path).path == "/healthz":
            self._answer(HTTPStatus.OK, {"ok": True})
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         {"error": f"a delivery is at most {MAX_BODY} bytes"})
            return
        body = self.rfile.read(length)
        status, answer = self.receiver.handle(url.path, parse_qs(url.query), self.headers, body)
        self._answer(status, answer)

    def _answer(self, status: int, answer: dict) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: a query string may carry the secret (`?token=`).
        log.info("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s", format % args)


def make_server(host: str, port: int, receiver: Receiver) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) that hands every request to `receiver`."""
    handler = type("Handler", (_Handler,), {"receiver": receiver})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(host: str, port: int, secret: str, specs: str | None = None) -> None:
    """Serve until interrupted (`ferryman webhook serve`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    receiver = Receiver(secret, Path(specs) if specs else SPECS)
    server = make_server(host, port, receiver)
    log.info("webhook receiver on http://%s:%d (%s)", host, port, ", ".join(PARSERS))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
