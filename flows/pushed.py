"""The `ferryman.image.pushed` event: a new tag of an app, released by the `on-push` trigger.

Emitted by the webhook receiver (`flows.receiver`) and the poller (`flows.poller`), each
after judging the tag against `running_version` with the app's tag policy; the
deployment trigger in `prefect.yaml` reads its payload into the release flow's parameters.
One image (repository, tag, digest) always gets the same event id, whoever reports it.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable

from flows import ROOT
from tasks.errors import EventNotSentError
from tasks.spec import ReleaseSpec
from tasks.webhooks import ImagePushed

EVENT = "ferryman.image.pushed"
_EVENT_IDS = uuid.UUID("6f1c1f1e-5b7a-4f43-9d1e-0f0e2a7c0d11")
EMIT_TIMEOUT = 10.0
"""Seconds for each attempt to hand an event to the Prefect API (the client retries 429/503)."""


def event_id(key: Hashable) -> uuid.UUID:
    """The event id for a delivery key (`tasks.webhooks.delivery_key`)."""
    return uuid.uuid5(_EVENT_IDS, repr(key))


def running_version(spec: ReleaseSpec) -> str | None:
    """The version the app's target runs now (None: nothing yet): what the tag policy judges
    a new tag against before it is announced."""
    from tasks.platforms import get_target

    status = get_target(spec).status()
    return status.current.version if status.current else None


def emit_pushed(app: str, pushed: ImagePushed, spec: ReleaseSpec, id: uuid.UUID) -> None:
    """Hand the event to the Prefect server; return only once the server has taken it.

    `prefect.events.emit_event` would queue it for a background sender that reports nothing
    back, so a caller could not tell a delivered event from one a Prefect outage drops. The
    events API (`POST /api/events`) answers 204 once the server has published the event to
    its triggers. Raises EventNotSentError when it did not answer so.
    """
    from prefect.client.orchestration import get_client
    from prefect.events import Event

    source = spec.source
    spec_path = source.relative_to(ROOT) if source and source.is_relative_to(ROOT) else source
    trigger = "poller" if pushed.source == "poller" else "webhook"
    event = Event(
        event=EVENT,
        resource={"prefect.resource.id": f"ferryman.app.{app}", "prefect.resource.name": app},
        payload={
            "app": app, "tag": pushed.tag, "digest": pushed.digest or "",
            "repository": pushed.repository, "registry": pushed.registry or "",
            "source": pushed.source, "trigger": trigger, "spec_path": str(spec_path or ""),
            "requested_by": f"{pushed.source} report of {pushed.repository}:{pushed.tag}",
        },
        id=id,
    )
    try:
        with get_client(sync_client=True, httpx_settings={"timeout": EMIT_TIMEOUT}) as client:
            client.request("POST", "/events", json=[event.model_dump(mode="json")])
    except Exception as e:  # noqa: BLE001 - whatever it was, the event is not known to be there
        raise EventNotSentError(
            f"the Prefect API did not take the event {EVENT} {id} "
            f"({e.__class__.__name__}: {e})"
        ) from None
