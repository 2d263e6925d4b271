"""The poller, for registries that send no webhooks: new tags in, `ferryman.image.pushed` out.

Runs on a schedule (`poll-tags/scheduled` in prefect.yaml). For each app it lists the
repository's tags, keeps the semantic versions the app's tag policy releases against the
version running now, and emits the same event the webhook receiver would for the newest
one. It emits an image (tag and digest) once: the event ids of the images it announced are
remembered in a Prefect variable per app (`ferryman_poller_<app>`, the last 50). Tags that are not
semantic versions have no order to find the newest by, so they are left to webhooks.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.variables import Variable

from flows import SPECS
from flows.pushed import emit_pushed, event_id, running_version
from flows.triggers import spec_path_for
from tasks.errors import retry_transient
from tasks.registries import get_registry, load_auth
from tasks.registries.api import RegistryAPI
from tasks.spec import ReleaseSpec, load_spec, spec_files
from tasks.tag_policy import admit_tag, parse_version
from tasks.webhooks import ImagePushed, delivery_key

REMEMBERED = 50


def memory_name(app: str) -> str:
    """The Prefect variable holding what the poller announced for `app`."""
    return "ferryman_poller_" + "".join(c if c.isalnum() else "_" for c in app.lower())


def newest_candidate(spec: ReleaseSpec, tags: list[str], running: str | None) -> str | None:
    """The newest semver tag that the app's tag policy releases over `running`, or None."""
    versions = [
        (version, tag) for tag in tags
        if (version := parse_version(tag)) is not None
        and admit_tag(spec.tag_policy, tag, running).release
    ]
    return max(versions)[1] if versions else None


@task(name="poll", task_run_name="poll {spec.app}", retries=2, retry_delay_seconds=[5, 15],
      retry_condition_fn=retry_transient, cache_policy=NONE)
def poll_app(spec: ReleaseSpec) -> str:
    """Look for a new tag of one app and announce it; returns what happened, in words."""
    log = get_run_logger()
    registry = get_registry(spec.registry)
    auth = load_auth(spec.registry)
    destination = registry.destination(spec.image.repository, auth)
    running = running_version(spec)
    with RegistryAPI(destination) as api:
        tags = api.tags()
        tag = newest_candidate(spec, tags, running)
        if tag is None:
            return f"{spec.app}: nothing new among {len(tags)} tag(s) (running {running})"
        digest = api.digest(tag)
    pushed = ImagePushed(
        source="poller", registry=destination.registry, repository=spec.image.repository,
        tag=tag, digest=digest, delivery_id=None, event_time=None,
    )
    uid = event_id(delivery_key(pushed))
    name = memory_name(spec.app)
    announced = Variable.get(name, default=[]) or []
    if str(uid) in announced:
        return f"{spec.app}: {tag} ({digest}) was announced before"
    emit_pushed(spec.app, pushed, spec, uid)  # EventNotSentError: the task retries
    # Event ids, not images: 50 of them stay well inside a variable's 5000 characters.
    Variable.set(name, ([str(uid)] + announced)[:REMEMBERED], overwrite=True)
    log.info("%s: announced %s (%s), running %s", spec.app, tag, digest, running)
    return f"{spec.app}: announced {tag}"


@flow(name="poll-tags")
def poll_tags(app: str = "", spec_path: str = "") -> list[str]:
    """Poll the registry of one app (by name or spec), or of every app under deployments/."""
    if app or spec_path:
        specs = [load_spec(spec_path_for(app, spec_path))]
    else:
        specs = [load_spec(file) for file in spec_files(SPECS)]
    return [poll_app(spec) for spec in specs]
