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
from tasks.spec import ReleaseSpec
from tasks.webhooks import ImagePushed

EVENT = "ferryman.image.pushed"
_EVENT_IDS = uuid.UUID("6f1c1f1e-5b7a-4f43-9d1e-0f0e2a7c0d11")


def event_id(key: Hashable) -> uuid.UUID:
    """The event id for a delivery key (`tasks.webhooks.delivery_key`)."""
    return uuid.uuid5(_EVENT_IDS, repr(key))


def running_version(spec: ReleaseSpec) -> str | None:
    """The version the app's target runs now (None: nothing yet): what the tag policy judges
    a new tag against before it is announced."""
    from tasks.targets import get_target

    status = get_target(spec).status()
    return status.current.version if status.current else None


def emit_pushed(app: str, pushed: ImagePushed, spec: ReleaseSpec, id: uuid.UUID) -> bool:
    """Hand the event to Prefect; False when Prefect cannot take it now.

    Prefect sends events from a background queue and would accept one while its server is
    down; asking the server first lets the receiver answer 503, so the registry delivers
    again instead of the push being lost.
    """
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event

    with get_client(sync_client=True) as client:
        if client.api_healthcheck() is not None:
            return False

    source = spec.source
    spec_path = source.relative_to(ROOT) if source and source.is_relative_to(ROOT) else source
    trigger = "poller" if pushed.source == "poller" else "webhook"
    event = emit_event(
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
    return event is not None
