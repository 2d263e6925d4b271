"""Docker Swarm target: one replicated service per app, driven through the docker SDK.

What ran before is recorded as labels on the service itself, in the same API call that
changes its image, so no deploy can leave a service without a record of what to restore.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import docker
import docker.errors
from docker.types import EndpointSpec, RestartPolicy, ServiceMode, UpdateConfig

from tasks.errors import DeployFailed, TargetError, TargetUnavailableError
from tasks.registries import RegistryAuth
from tasks.spec import ReleaseSpec
from tasks.targets.base import Progress, TargetStatus, Version
from tasks.targets.compose import Service, load_service
from tasks.targets.compose import UpdateConfig as ComposeUpdateConfig

LABEL = "ferryman"
MANAGED = f"{LABEL}.managed"
# Swarm update states that mean the platform itself gave up on the new version.
SWARM_GAVE_UP = {"paused", "rollback_started", "rollback_paused", "rollback_completed"}
# A new task that failed this many times is a crash loop, not a slow start.
CRASH_LOOP_FAILURES = 3


def _labels_for(prefix: str, version: Version | None) -> dict[str, str]:
    if version is None:
        return {}
    return {f"{LABEL}.{prefix}version": version.version, f"{LABEL}.{prefix}image": version.image}


def _version_from(labels: dict[str, str], prefix: str) -> Version | None:
    version = labels.get(f"{LABEL}.{prefix}version")
    image = labels.get(f"{LABEL}.{prefix}image")
    return Version(version, image) if version and image else None


def _docker_update_config(config: ComposeUpdateConfig) -> UpdateConfig:
    return UpdateConfig(
        parallelism=config.parallelism,
        delay=int(config.delay * 1e9),
        failure_action=config.failure_action,
        monitor=int(config.monitor * 1e9),
        max_failure_ratio=config.max_failure_ratio,
        order=config.order,
    )


class SwarmTarget:
    """A Swarm service named by `target.service`, shaped by its stack-file entry."""

    def __init__(
        self,
        spec: ReleaseSpec,
        auth: RegistryAuth | None = None,
        client: docker.DockerClient | None = None,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.name = spec.target.service
        self.definition, self.networks = load_service(spec.target.stack_file, self.name)
        self.poll_seconds = poll_seconds
        self.clock = clock
        try:
            if client is None and spec.target.docker_host:
                client = docker.DockerClient(base_url=spec.target.docker_host, timeout=60)
            self.client = client or docker.from_env(timeout=60)
        except docker.errors.DockerException as e:
            raise TargetUnavailableError(f"cannot reach the Docker engine: {e}") from e
        if auth is not None:
            # Stored on the client, so create/update send X-Registry-Auth and nodes can pull.
            self._call(
                lambda: self.client.login(
                    username=auth.username,
                    password=auth.password.get_secret_value(),
                    registry=auth.registry,
                ),
                "log in to the registry for image pulls",
            )

    # -- reading ---------------------------------------------------------------------------

    def _call(self, fn: Callable, doing: str):
        try:
            return fn()
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as e:
            if e.status_code is not None and e.status_code >= 500:
                raise TargetUnavailableError(f"Swarm could not {doing}: {e.explanation}") from e
            raise TargetError(f"Swarm refused to {doing}: {e.explanation}") from e
        except docker.errors.DockerException as e:
            raise TargetUnavailableError(f"cannot reach the Docker engine to {doing}: {e}") from e
        except OSError as e:  # requests' ConnectionError is one
            raise TargetUnavailableError(f"cannot reach the Docker engine to {doing}: {e}") from e

    def _service(self):
        try:
            return self._call(lambda: self.client.services.get(self.name), "read the service")
        except docker.errors.NotFound:
            return None

    def _tasks(self, service) -> list[dict]:
        return self._call(lambda: service.tasks(), "list the service's tasks")

    def status(self) -> TargetStatus:
        """Read the service's labels and replica counts; `exists=False` if there is none."""
        service = self._service()
        if service is None:
            return TargetStatus(exists=False)
        spec = service.attrs["Spec"]
        labels = spec.get("Labels") or {}
        image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
        current = _version_from(labels, "") or Version(_tag_of(image), image)
        running = [
            t for t in self._tasks(service)
            if t["DesiredState"] == "running" and t["Status"]["State"] == "running"
        ]
        return TargetStatus(
            exists=True,
            current=current,
            stable=_version_from(labels, "stable."),
            previous=_version_from(labels, "previous."),
            desired_replicas=spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0),
            running_replicas=len(running),
            update_state=(service.attrs.get("UpdateStatus") or {}).get("State"),
        )

    # -- changing --------------------------------------------------------------------------

    def _update_config(self) -> ComposeUpdateConfig:
        config = self.definition.deploy.update_config
        override = self.spec.target.update_config
        if override is not None:
            config = config.model_copy(update=override.model_dump(exclude_none=True))
        return config

    def _create(self, new: Version) -> None:
        d: Service = self.definition
        policy = d.deploy.restart_policy
        labels = {**d.deploy.labels, MANAGED: "true", f"{LABEL}.app": self.spec.app}
        labels |= _labels_for("", new)
        self._call(
            lambda: self.client.services.create(
                new.image,
                command=d.command,
                name=self.name,
                env=[f"{k}={v}" for k, v in d.environment.items()],
                labels=labels,
                container_labels={**d.labels, f"{LABEL}.app": self.spec.app},
                mode=ServiceMode("replicated", replicas=d.deploy.replicas),
                networks=self.networks,
                endpoint_spec=EndpointSpec(mode=d.deploy.endpoint_mode),
                update_config=_docker_update_config(self._update_config()),
                rollback_config=_docker_update_config(d.deploy.rollback_config),
                restart_policy=RestartPolicy(
                    condition=policy.condition,
                    delay=int(policy.delay * 1e9),
                    max_attempts=policy.max_attempts,
                    window=int(policy.window * 1e9),
                ),
                stop_grace_period=int(d.stop_grace_period * 1e9),
            ),
            "create the service",
        )

    def _move(
        self,
        service,
        to: Version,
        labels: dict[str, str],
        config: ComposeUpdateConfig,
        progress: Progress,
        swarm_gave_up_is_failure: bool,
    ) -> None:
        """Update the service's image and labels in one call and wait for the result.

        The tasks and the update status are read first, so that `_wait` tells what this
        update did from what earlier ones left behind.
        """
        before = {t["ID"] for t in self._tasks(service)}
        stale = _update_started(service)
        self._call(
            lambda: service.update(
                image=to.image, labels=labels, update_config=_docker_update_config(config)
            ),
            "update the service",
        )
        self._wait(to, before, stale, progress, swarm_gave_up_is_failure)

    def deploy(self, new: Version, restore_point: Version | None, progress: Progress) -> None:
        """Create the service, or move it to `new` with its rolling update; wait for the end.

        The restore point goes into the service's labels in the same update that changes
        its image. Raises DeployFailed when Swarm pauses or rolls back the update, when new
        tasks crash-loop, or when `target.deploy_timeout` passes.
        """
        service = self._service()
        if service is None:
            progress(f"creating service {self.name} at {new.version}")
            self._create(new)
            self._wait(new, set(), None, progress, swarm_gave_up_is_failure=True)
            return
        labels = dict(service.attrs["Spec"].get("Labels") or {})
        if restore_point is not None and MANAGED not in labels:
            # A service Ferryman did not create: what runs now is the only known good.
            labels |= _labels_for("stable.", restore_point)
        labels |= {MANAGED: "true", f"{LABEL}.app": self.spec.app}
        labels |= _labels_for("", new) | _labels_for("previous.", restore_point)
        progress(f"updating service {self.name} to {new.version}")
        self._move(service, new, labels, self._update_config(), progress,
                   swarm_gave_up_is_failure=True)

    def promote(self, new: Version) -> None:
        """Record `new` as stable; a label-only update, so no task restarts."""
        service = self._service()
        if service is None:
            raise TargetError(f"service {self.name} vanished before it could be promoted")
        spec = service.attrs["Spec"]
        labels = dict(spec.get("Labels") or {}) | _labels_for("stable.", new)
        # The low-level call with the exact current spec: the SDK's Service.update re-reads
        # the spec with defaults filled in (Resources={}, DNSConfig={}), which Swarm takes
        # for a new task template and answers with a rolling restart of every replica.
        self._call(
            lambda: self.client.api.update_service(
                service.id,
                service.version,
                task_template=spec["TaskTemplate"],
                name=spec["Name"],
                labels=labels,
                mode=spec.get("Mode"),
                update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"),
            ),
            "label the service as promoted",
        )

    def rollback(self, to: Version | None, progress: Progress) -> None:
        """Put the service back on `to` and wait until it runs; remove it if `to` is None."""
        service = self._service()
        if service is None:
            if to is None:
                return
            raise TargetError(f"service {self.name} vanished; nothing to roll back")
        if to is None:
            progress(f"removing service {self.name}: no earlier version to restore")
            self._call(service.remove, "remove the service")
            return
        labels = dict(service.attrs["Spec"].get("Labels") or {}) | _labels_for("", to)
        progress(f"restoring service {self.name} to {to.version}")
        # The stack file's rollback_config (typically all at once): getting the known good
        # version back fast matters more than a gentle rollout. The next deploy sets the
        # update_config again.
        self._move(service, to, labels, self.definition.deploy.rollback_config, progress,
                   swarm_gave_up_is_failure=False)

    def _wait(
        self,
        new: Version,
        before: set[str],
        stale_update: str | None,
        progress: Progress,
        swarm_gave_up_is_failure: bool,
    ) -> None:
        """Poll until every replica runs `new`. `before` holds the task IDs and
        `stale_update` the UpdateStatus start time from before our change: an update
        status left over from an earlier update (ours changed no task, say) is not ours."""
        deadline = self.clock() + self.spec.target.deploy_timeout
        last_line = ""
        while True:
            service = self._service()
            if service is None:
                raise DeployFailed(f"service {self.name} was removed while deploying")
            update = service.attrs.get("UpdateStatus") or {}
            ours = update.get("StartedAt") != stale_update
            state = update.get("State") if ours else None
            if swarm_gave_up_is_failure and state in SWARM_GAVE_UP:
                raise DeployFailed(
                    f"Swarm {state.replace('_', ' ')} the update to {new.version}: "
                    f"{update.get('Message', 'no message')}"
                )
            tasks = self._tasks(service)
            replicas = service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"]
            live = [t for t in tasks if t["DesiredState"] == "running"]
            on_new = [t for t in live if t["Spec"]["ContainerSpec"]["Image"] == new.image]
            ready = [t for t in on_new if t["Status"]["State"] == "running"]
            crashed = [
                t for t in tasks
                if t["ID"] not in before
                and t["Spec"]["ContainerSpec"]["Image"] == new.image
                and t["Status"]["State"] in ("failed", "rejected")
            ]
            if len(crashed) >= CRASH_LOOP_FAILURES:
                reason = crashed[-1]["Status"].get("Err") or crashed[-1]["Status"]["Message"]
                raise DeployFailed(
                    f"{len(crashed)} tasks of {new.version} failed to start (last: {reason})"
                )
            updating = state in ("updating", "rollback_started")
            if len(ready) >= replicas and len(live) == len(ready) and not updating:
                progress(f"{self.name}: {len(ready)}/{replicas} tasks running {new.version}")
                return
            line = f"{self.name}: {len(ready)}/{replicas} tasks running {new.version}" + (
                f" (update {state})" if state else ""
            )
            if line != last_line:
                progress(line)
                last_line = line
            if self.clock() > deadline:
                raise DeployFailed(
                    f"{new.version} did not converge within {self.spec.target.deploy_timeout:g}s: "
                    f"{len(ready)}/{replicas} tasks running"
                )
            time.sleep(self.poll_seconds)


def _update_started(service) -> str | None:
    return (service.attrs.get("UpdateStatus") or {}).get("StartedAt")


def _tag_of(image: str) -> str:
    """The tag of an image reference, for services Ferryman did not label ('unknown' if none)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "unknown"
