"""What a release started by a trigger checks, on the Prefect server, before it changes anything.

Called by the release flow. Triggers (the webhook receiver's events, the poller) start a
release run per new tag; these checks make a burst of them release only the newest, once:

- `newer_request`: another release of the same app asks for a newer version (semver
  precedence; the later request when either tag is not a version) and waits or runs now,
  or ran since this one was requested;
- `released_before`: a release run of the app already went out with this digest (Ferryman's
  own pushes notify the registry too, and a rolled-back image must not come back by itself),
  or, for a sender that gives no digest (Docker Hub), with this version;
- `defer`: outside the app's upgrade window, the release is recorded as a scheduled run of
  the same deployment at the window's opening, visible in the UI's upcoming runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import get_run_context
from prefect.deployments import run_deployment

from flows import ROOT, SPECS
from flows.tags import app_tag, digest_tag, version_tag
from tasks.errors import SpecError
from tasks.spec import app_of, find_spec
from tasks.windows import PendingRelease, PendingReleases

DEFERRED_DEPLOYMENT = "release/deferred"
"""Where a release outside its window is scheduled for the opening, whoever started it."""
DUE_WITHIN = timedelta(seconds=60)
"""A scheduled run due within this long counts as waiting now (workers start runs early)."""
_WAITING = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
_RAN = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]
"""A newer request a person cancelled does not hold back the older one."""


def spec_path_for(app: str, spec_path: str) -> Path:
    """The spec a run releases: `spec_path` (relative to the checkout) or the app's spec."""
    if spec_path:
        path = Path(spec_path)
        return path if path.is_absolute() else ROOT / path
    if not app:
        raise SpecError("name the app (or a spec_path) to release")
    return find_spec(app, SPECS)


def earlier_release_tags(app: str, version: str, digest: str | None) -> list[str]:
    """The tags of the runs a triggered release must not repeat: those of `app` that went
    out with the same image (`digest`), or with the same version when the sender gave no
    digest and the tag is all there is to go by."""
    return [app_tag(app), digest_tag(digest) if digest else version_tag(version)]


def _app_of(run: FlowRun) -> str | None:
    """The app another release run is for: its `app`, or the app its spec file names."""
    parameters = run.parameters or {}
    if parameters.get("spec_path"):
        return app_of(spec_path_for("", parameters["spec_path"]))
    return parameters.get("app") or None


def _other_release_runs(limit: int = 200, **conditions: Any) -> list[FlowRun]:
    """Release flow runs but this one that meet `conditions` (FlowRunFilter fields), newest
    first."""
    me = get_run_context().flow_run
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["release"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(not_any_=[me.id]), **conditions),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )


def newer_request(app: str, version: str) -> FlowRun | None:
    """A release run of `app` asking for a newer version than this run: one that waits or
    runs now, or one that ran since this run was requested (a burst releases its newest)."""
    me = get_run_context().flow_run
    due = FlowRunFilterExpectedStartTime(before_=datetime.now(UTC) + DUE_WITHIN)
    runs = _other_release_runs(expected_start_time=due,
                               end_time=FlowRunFilterEndTime(is_null_=True))
    runs += _other_release_runs(end_time=FlowRunFilterEndTime(after_=me.created))
    others = {r.id: r for r in runs
              if r.state is not None and r.state.type in _WAITING + _RAN and _app_of(r) == app}
    mine = PendingRelease(version, me.created)
    requests = {PendingRelease((r.parameters or {}).get("version", ""), r.created): r
                for r in others.values()}
    newest = PendingReleases((mine, *requests)).newest()
    return None if newest is mine else requests[newest]


def release_run_of(app: str, states: list[StateType]):
    """The latest release run of `app` in one of `states`, or None (`ferryman approve`,
    `abort`, `rollback` find the run they answer this way)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["release"])),
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[app_tag(app)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    return runs[0] if runs else None


def released_before(app: str, version: str, digest: str | None) -> FlowRun | None:
    """The latest other release run of `app` that deployed (or tried) the image `digest`, or
    without a digest, the version `version` (`earlier_release_tags`)."""
    runs = _other_release_runs(
        limit=1, tags=FlowRunFilterTags(all_=earlier_release_tags(app, version, digest))
    )
    return runs[0] if runs else None


def defer(parameters: dict[str, Any], opening: datetime, app: str, version: str) -> FlowRun:
    """Schedule this release again at the window's `opening`; returns the scheduled run.

    The scheduled run goes to `release/deferred` with everything this run was asked
    (`deferred_from` set), so that when the window opens, of several deferred releases of
    one app only the newest runs.
    """
    return run_deployment(
        name=DEFERRED_DEPLOYMENT,
        parameters=parameters,
        scheduled_time=opening,
        flow_run_name=f"{app} {version} (pending for the window)",
        tags=["ferryman", "pending", app_tag(app)],
        timeout=0,
        as_subflow=False,
    )
