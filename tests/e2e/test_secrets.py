"""Secrets never leave their files: after releases that used the registry password and
webhook deliveries that used the receiver's secrets, none of them appears, as it is, in
base64 or URL-encoded, in any Prefect log line, artifact, event or flow-run parameter of the
test's time range, nor in any file under the stack's log folder."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote

import httpx
import pytest

from tests.helpers import release

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("demo")]


def _secrets() -> dict[str, str]:
    from devstack.settings import StackPaths, dockerhub_token, registry_password, webhook_secret

    paths = StackPaths.default()
    return {"registry password": registry_password(paths),
            "webhook secret": webhook_secret(paths),
            "docker hub token": dockerhub_token(paths)}


def _forms(name: str, value: str) -> dict[str, str]:
    """The ways a secret could leak: as it is, base64 (alone, and as the registry's Basic
    auth `user:password`), and URL-encoded."""
    from devstack.settings import REGISTRY_USER

    forms = {name: value, f"{name} (base64)": base64.b64encode(value.encode()).decode(),
             f"{name} (URL-encoded)": quote(value, safe="")}
    if name == "registry password":
        forms[f"{name} (Basic auth)"] = base64.b64encode(
            f"{REGISTRY_USER}:{value}".encode()).decode()
    return {k: v for k, v in forms.items() if v}


def _everything_prefect_keeps(since) -> list[tuple[str, str]]:
    """(where, text) for every log line, artifact, event and flow-run parameter since."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterTimestamp,
    )
    from prefect.events.filters import EventFilter, EventOccurredFilter

    found: list[tuple[str, str]] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            logs = client.read_logs(log_filter=LogFilter(
                timestamp=LogFilterTimestamp(after_=since)), limit=200, offset=offset)
            found += [(f"log {log.flow_run_id}", log.message) for log in logs]
            if len(logs) < 200:
                break
            offset += 200
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=since)), limit=200)
        found += [(f"run {r.name}", str(r.parameters) + str(r.tags) + str(r.state))
                  for r in runs]
        # The artifacts of those runs: the releases' own, however many the server holds.
        found += [(f"artifact {a.key}", str(a.data) + str(a.description))
                  for a in client.read_artifacts(artifact_filter=ArtifactFilter(
                      flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs])),
                      limit=200)]
        page = client.read_events(filter=EventFilter(
            occurred=EventOccurredFilter(since=since)), limit=50)
        while page is not None:
            found += [(f"event {e.event}", e.model_dump_json()) for e in page.events]
            page = client.read_events_page(page.next_page) if page.next_page else None
    return found


def test_no_secret_appears_in_logs_artifacts_events_parameters_or_log_files(tmp_path):
    from datetime import UTC, datetime

    from devstack.settings import StackPaths
    from devstack.stack import WEBHOOK

    since = datetime.now(UTC)
    secrets = _secrets()
    code, record = release(f"6.0.0-s{int(time.time()) % 1_000_000}")  # logs in, pushes, pulls
    assert code == 0, record["reason"]
    # Deliveries that carry each secret: a valid one, and forged ones that are refused.
    for path, headers in (
        ("/hooks/distribution", {"Authorization": f"Bearer {secrets['webhook secret']}"}),
        ("/hooks/distribution", {"Authorization": "Bearer wrong"}),
        (f"/hooks/dockerhub?token={secrets['docker hub token']}", {}),
    ):
        httpx.post(f"{WEBHOOK}{path}", headers=headers, content=b'{"events": []}', timeout=10)
    time.sleep(5)  # logs and events reach the server asynchronously

    places = _everything_prefect_keeps(since)
    assert len(places) > 50, "too little was searched to mean anything"
    log_files = [p for p in StackPaths.default().logs.rglob("*") if p.is_file()]
    assert log_files
    places += [(str(p), p.read_text(errors="replace")) for p in log_files]
    assert any(where.startswith("artifact") for where, _ in places), "no artifact searched"
    forms = {k: v for name, value in secrets.items() for k, v in _forms(name, value).items()}
    leaks = [(where, name) for where, text in places for name, value in forms.items()
             if value in text]
    assert leaks == [], leaks
