"""Docker Swarm target: an app's workloads are replicated services, driven by the docker SDK.

The stable workload is the service named by `target.service`; during a release a canary
(`<service>-canary`) or a preview (`<service>-preview`) service runs beside it. What ran
before, the last promoted version (with its whole task template) and the mark of a release
in flight are labels on the stable service, written in the same API call that changes it,
so no deploy can leave a service without a record of what to restore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors
from docker.types import (
    ConfigReference,
    ContainerSpec,
    EndpointSpec,
    Healthcheck,
    Mount,
    Resources,
    RestartPolicy,
    SecretReference,
    TaskTemplate,
    UpdateConfig,
)

from tasks.errors import DeployFailed, SpecError, TargetError
from tasks.platforms.swarm.api import SwarmApi
from tasks.platforms.swarm.compose import Definition, load_service
from tasks.platforms.swarm.compose import UpdateConfig as ComposeUpdateConfig
from tasks.platforms.swarm.spec import SwarmTargetSpec
from tasks.registries import RegistryAuth
from tasks.targets import records
from tasks.targets.base import (
    InFlight,
    Progress,
    Role,
    TargetStatus,
    Version,
    Workload,
    follow,
)
from tasks.targets.records import tag_of

LABEL = "ferryman"
MANAGED = f"{LABEL}.{records.MANAGED}"
ROLE = f"{LABEL}.role"
TEMPLATE = records.TEMPLATE
"""Label suffix holding a version's whole task template (JSON)."""
# Swarm update states that mean the platform itself gave up on the new version.
SWARM_GAVE_UP = {"paused", "rollback_started", "rollback_paused", "rollback_completed"}
# A new task that failed this many times is a crash loop, not a slow start.
CRASH_LOOP_FAILURES = 3
NS = 1_000_000_000
# Canary, preview and restores move all replicas at once, new ones first: they are either
# judged already (a restore) or not yet serving users.
ALL_AT_ONCE = ComposeUpdateConfig(parallelism=0, order="start-first", failure_action="pause",
                                  monitor=0.0)


def _version_labels(prefix: str, version: Version | None) -> dict[str, str]:
    return records.version_entries(f"{LABEL}.", prefix, version)


def _version_from(labels: dict[str, str], prefix: str) -> Version | None:
    return records.version_of(labels, f"{LABEL}.", prefix)


def _mark_from(labels: dict[str, str]) -> InFlight | None:
    return records.mark_of(labels, f"{LABEL}.")


def _docker_update_config(config: ComposeUpdateConfig) -> UpdateConfig:
    return UpdateConfig(
        parallelism=config.parallelism,
        delay=int(config.delay * NS),
        failure_action=config.failure_action,
        monitor=int(config.monitor * NS),
        max_failure_ratio=config.max_failure_ratio,
        order=config.order,
    )


@dataclass
class _Move:
    """What a role looked like before a change, so `watch` tells this change's effects from
    what earlier ones left behind."""

    tasks_before: set[str]
    stale_update: str | None
    deadline: float
    gave_up_is_failure: bool


class SwarmTarget:
    """The services of one app, shaped by its stack-file entry."""

    def __init__(
        self,
        app: str,
        settings: SwarmTargetSpec,
        auth: RegistryAuth | None = None,
        client: docker.DockerClient | SwarmApi | None = None,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.settings = settings
        self.name = settings.service
        self.definition: Definition = load_service(settings.stack_file, self.name)
        self.replicas = self.definition.service.deploy.replicas
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._moves: dict[Role, _Move] = {}
        self._pending_mark: dict[str, str] = {}
        if isinstance(client, SwarmApi):
            self.api = client
        elif client is not None:
            self.api = SwarmApi(client)
        else:
            self.api = SwarmApi.connect(settings.docker_host)
        if auth is not None:
            self.api.login(auth.username, auth.password.get_secret_value(), auth.registry)

    def service_name(self, role: Role) -> str:
        """`demo`, `demo-canary`, `demo-preview`: a Swarm service name is a DNS name too."""
        return self.name if role is Role.STABLE else f"{self.name}-{role.value}"

    # -- reading ---------------------------------------------------------------------------

    def _service(self, role: Role) -> dict | None:
        return self.api.service(self.service_name(role))

    def _tasks(self, service: dict) -> list[dict]:
        return self.api.tasks(service)

    def _workload(self, role: Role, service: dict, tasks: list[dict]) -> Workload:
        spec = service["Spec"]
        labels = spec.get("Labels") or {}
        image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
        version = _version_from(labels, "") or Version(tag_of(image), image)
        ready = [
            t for t in tasks
            if t["DesiredState"] == "running" and t["Status"]["State"] == "running"
            and t["Spec"]["ContainerSpec"]["Image"] == image
        ]
        desired = spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0)
        aliases = {a for n in spec["TaskTemplate"].get("Networks") or []
                   for a in n.get("Aliases") or []}
        on_app = desired > 0 and (role is Role.STABLE or self.name in aliases)
        return Workload(role, version, desired, len(ready), on_app)

    def status(self) -> TargetStatus:
        """Read every role's service and the stable one's labels; `exists=False` if there is
        no stable service."""
        workloads = []
        for role in Role:
            service = self._service(role)
            if service is not None:
                workloads.append(self._workload(role, service, self._tasks(service)))
        stable_service = self._service(Role.STABLE)
        if stable_service is None:
            return TargetStatus(exists=False, workloads=tuple(workloads))
        spec = stable_service["Spec"]
        labels = spec.get("Labels") or {}
        main = next(w for w in workloads if w.role is Role.STABLE)
        return TargetStatus(
            exists=True,
            current=main.version,
            stable=_version_from(labels, "stable."),
            previous=_version_from(labels, "previous."),
            desired_replicas=main.desired,
            running_replicas=main.ready,
            update_state=(stable_service.get("UpdateStatus") or {}).get("State"),
            in_flight=_mark_from(labels),
            workloads=tuple(workloads),
        )

    # -- the service definition ------------------------------------------------------------

    def _update_config(self) -> ComposeUpdateConfig:
        config = self.definition.service.deploy.update_config
        override = self.settings.update_config
        if override is not None:
            config = config.model_copy(update=override.model_dump(exclude_none=True))
        return config

    def _reference(self, kind: str, name: str) -> str:
        """The swarm ID of an external secret or config, by its exact name."""
        found = self.api.reference(kind, name)
        if found is None:
            raise SpecError(
                f"{self.settings.stack_file}: {kind} {name!r} does not exist in the swarm "
                f"(create it first: docker {kind} create {name} ...)"
            )
        return found

    def _task_template(self, image: str, aliases: list[str]) -> dict:
        """The stack file's service as a Swarm task template running `image`."""
        d = self.definition
        s = d.service
        health = None
        if s.healthcheck is not None:
            h = s.healthcheck
            health = Healthcheck(
                test=["NONE"] if h.disable else h.test,
                interval=int(h.interval * NS) if h.interval else None,
                timeout=int(h.timeout * NS) if h.timeout else None,
                retries=h.retries,
                start_period=int(h.start_period * NS) if h.start_period else None,
            )
        container = ContainerSpec(
            image,
            command=s.entrypoint,
            args=s.command,
            env=[f"{k}={v}" for k, v in s.environment.items()],
            labels={**s.labels, f"{LABEL}.app": self.app},
            user=s.user,
            workdir=s.working_dir,
            stop_grace_period=int(s.stop_grace_period * NS),
            healthcheck=health,
            mounts=[Mount(target=m.target, source=source, type=m.type, read_only=m.read_only)
                    for source, m in d.volumes],
            secrets=[SecretReference(self._reference("secret", name), name,
                                     filename=r.target or r.source, uid=r.uid, gid=r.gid,
                                     mode=r.mode)
                     for name, r in d.secrets],
            configs=[ConfigReference(self._reference("config", name), name,
                                     filename=r.target or f"/{r.source}", uid=r.uid,
                                     gid=r.gid, mode=r.mode)
                     for name, r in d.configs],
        )
        limits, reservations = s.deploy.resources.limits, s.deploy.resources.reservations
        policy = s.deploy.restart_policy
        return TaskTemplate(
            container,
            resources=Resources(
                cpu_limit=int(limits.cpus * NS) if limits.cpus else None,
                mem_limit=limits.memory,
                cpu_reservation=int(reservations.cpus * NS) if reservations.cpus else None,
                mem_reservation=reservations.memory,
            ),
            restart_policy=RestartPolicy(
                condition=policy.condition, delay=int(policy.delay * NS),
                max_attempts=policy.max_attempts, window=int(policy.window * NS),
            ),
            networks=[{"Target": n, "Aliases": aliases} if aliases else {"Target": n}
                      for n in d.networks],
        )

    def _endpoint(self, role: Role) -> EndpointSpec:
        d = self.definition.service
        # Published host ports belong to the app's own service; a canary or preview on the
        # same node would find them taken. They are reached on the stack's network instead.
        ports = [
            {"TargetPort": p.target, "PublishedPort": p.published, "Protocol": p.protocol,
             "PublishMode": p.mode}
            for p in d.ports if role is Role.STABLE
        ]
        return EndpointSpec(mode=d.deploy.endpoint_mode, ports=ports or None)

    # -- changing --------------------------------------------------------------------------

    def _update(self, service: dict, doing: str, **changes) -> None:
        """One service update from its exact current spec with `changes` (Spec keys)."""
        self.api.update(service, {**service["Spec"], **changes}, doing)

    def _relabel(self, labels: dict[str, str], doing: str) -> None:
        """A label-only update of the stable service: no task restarts."""
        service = self._service(Role.STABLE)
        if service is None:
            raise TargetError(f"service {self.name} vanished; cannot {doing}")
        self._update(service, doing, Labels=labels)

    def _start(self, role: Role, service: dict | None, gave_up_is_failure: bool = True) -> None:
        """Remember what `role` looked like before a change (see `_Move`)."""
        self._moves[role] = _Move(
            tasks_before={t["ID"] for t in self._tasks(service)} if service else set(),
            stale_update=_update_started(service) if service else None,
            deadline=self.clock() + self.settings.deploy_timeout,
            gave_up_is_failure=gave_up_is_failure,
        )

    def mark(self, in_flight: InFlight, restore_point: Version | None) -> None:
        """Label the stable service with the release's mark and its restore point."""
        service = self._service(Role.STABLE)
        if service is None:  # a first install: the mark goes on with the new service
            self._pending_mark = records.mark_entries(f"{LABEL}.", in_flight)
            return
        labels = records.marked(service["Spec"].get("Labels") or {}, f"{LABEL}.",
                                in_flight, restore_point) | {f"{LABEL}.app": self.app}
        self._update(service, "mark the service with the release in flight", Labels=labels)

    def run(
        self, role: Role, version: Version, replicas: int, progress: Progress,
        wait: bool = True,
    ) -> None:
        """Create the role's service or move it to `version`; the stable one with the stack
        file's update_config (the platform's rolling update), the others all at once."""
        name = self.service_name(role)
        service = self._service(role)
        template = self._task_template(version.image, [])
        config = self._update_config() if role is Role.STABLE else ALL_AT_ONCE
        labels = {MANAGED: "true", f"{LABEL}.app": self.app,
                  f"{LABEL}.{TEMPLATE}": json.dumps(template, sort_keys=True)}
        labels |= _version_labels("", version)
        if role is not Role.STABLE:
            labels[ROLE] = role.value
        self._start(role, service)
        if service is None:
            progress(f"creating service {name} at {version.version} ({replicas} replicas)")
            labels |= self._pending_mark if role is Role.STABLE else {}
            self.api.create(
                name, template, {**self.definition.service.deploy.labels, **labels}, replicas,
                update_config=_docker_update_config(config),
                rollback_config=_docker_update_config(
                    self.definition.service.deploy.rollback_config),
                endpoint_spec=self._endpoint(role),
            )
        else:
            current = dict(service["Spec"].get("Labels") or {})
            progress(f"updating service {name} to {version.version} ({replicas} replicas)")
            self._update(
                service, f"update service {name}",
                TaskTemplate=template, Labels={**current, **labels},
                Mode={"Replicated": {"Replicas": replicas}},
                UpdateConfig=_docker_update_config(config),
                EndpointSpec=self._endpoint(role),
            )
        if wait:
            self.wait(role, version, progress)

    def restore(self, to: Version, progress: Progress) -> None:
        """Put the stable service back on `to` with the task template it was promoted with
        (the stack file's definition if none is recorded), all replicas at once."""
        service = self._service(Role.STABLE)
        if service is None:
            raise TargetError(f"service {self.name} vanished; nothing to restore")
        labels = dict(service["Spec"].get("Labels") or {})
        template = None
        if _version_from(labels, "stable.") == to and f"{LABEL}.stable.{TEMPLATE}" in labels:
            template = json.loads(labels[f"{LABEL}.stable.{TEMPLATE}"])
        template = template or self._task_template(to.image, [])
        labels |= _version_labels("", to) | {f"{LABEL}.{TEMPLATE}": json.dumps(template,
                                                                               sort_keys=True)}
        progress(f"restoring service {self.name} to {to.version}")
        # The stack file's rollback_config (typically all at once): getting the known good
        # version back fast matters more than a gentle rollout. The next deploy sets the
        # update_config again.
        self._start(Role.STABLE, service, gave_up_is_failure=False)
        self._update(
            service, f"restore service {self.name}",
            TaskTemplate=template, Labels=labels,
            Mode={"Replicated": {"Replicas": self.replicas}},
            UpdateConfig=_docker_update_config(self.definition.service.deploy.rollback_config),
        )
        self.wait(Role.STABLE, to, progress)

    def scale(self, role: Role, replicas: int, progress: Progress) -> None:
        """Set the role's replica count; the task template is left as it is (no restarts)."""
        service = self._service(role)
        if service is None:
            raise TargetError(f"service {self.service_name(role)} does not exist; cannot scale")
        workload = self._workload(role, service, self._tasks(service))
        progress(f"scaling {self.service_name(role)} to {replicas} replicas")
        self._start(role, service)
        self._update(service, f"scale {self.service_name(role)}",
                     Mode={"Replicated": {"Replicas": replicas}})
        self.wait(role, workload.version, progress)

    def reshape(self, role: Role, progress: Progress, replicas: int | None = None,
                aliases: list[str] | None = None) -> None:
        """One update of a role's service: its replica count and, when given, the network
        aliases of its tasks (the router's business: who answers on which name), then wait.

        An alias is part of the task template, so a change of aliases replaces the tasks
        (new ones first, all at once): Swarm cannot move a running task's address.
        """
        name = self.service_name(role)
        service = self._service(role)
        if service is None:
            raise TargetError(f"service {name} does not exist")
        changes: dict = {}
        if replicas is not None:
            changes["Mode"] = {"Replicated": {"Replicas": replicas}}
        if aliases is not None:
            template = json.loads(json.dumps(service["Spec"]["TaskTemplate"]))
            for network in template.get("Networks") or []:
                network["Aliases"] = list(aliases)
            if template != service["Spec"]["TaskTemplate"]:
                changes |= {"TaskTemplate": template,
                            "UpdateConfig": _docker_update_config(ALL_AT_ONCE)}
        if not changes:
            return
        workload = self._workload(role, service, self._tasks(service))
        size = replicas if replicas is not None else workload.desired
        names = ", ".join(aliases or []) or "its own name"
        progress(f"{name}: {size} replicas" + (f", answering on {names}"
                                                if aliases is not None else ""))
        self._start(role, service)
        self._update(service, f"change service {name}", **changes)
        self.wait(role, workload.version, progress)

    def remove(self, role: Role, progress: Progress) -> None:
        """Remove the role's service and wait until its containers are gone (and with
        them its addresses)."""
        service = self._service(role)
        if service is None:
            return
        name = service["Spec"]["Name"]
        progress(f"removing service {name}")
        self.api.remove(service)
        deadline = self.clock() + self.settings.deploy_timeout
        while self.api.containers_of(service):
            if self.clock() > deadline:
                raise TargetError(f"the containers of {name} did not stop within "
                                  f"{self.settings.deploy_timeout:g}s")
            time.sleep(self.poll_seconds)

    def unmark(self, stable: Version | None) -> None:
        """Clear the release's mark; with `stable`, record it (and its task template) as the
        stable version. A label-only update: no task restarts."""
        service = self._service(Role.STABLE)
        if service is None:
            return
        labels = records.unmarked(service["Spec"].get("Labels") or {}, f"{LABEL}.",
                                  stable)
        self._update(service, "record the release's end on the service", Labels=labels)

    # -- following a change ----------------------------------------------------------------

    def watch(self, role: Role, version: Version) -> Workload:
        """One look at a role moving to `version`; raises DeployFailed when it cannot get
        there (Swarm gave up, a crash loop, the deploy timeout)."""
        name = self.service_name(role)
        move = self._moves.get(role) or _Move(set(), None, self.clock() + 1e9, True)
        service = self._service(role)
        if service is None:
            raise DeployFailed(f"service {name} was removed while deploying")
        update = service.get("UpdateStatus") or {}
        state = update.get("State") if update.get("StartedAt") != move.stale_update else None
        if move.gave_up_is_failure and state in SWARM_GAVE_UP:
            raise DeployFailed(
                f"Swarm {state.replace('_', ' ')} the update of {name} to {version.version}: "
                f"{update.get('Message', 'no message')}"
            )
        tasks = self._tasks(service)
        crashed = [
            t for t in tasks
            if t["ID"] not in move.tasks_before
            and t["Spec"]["ContainerSpec"]["Image"] == version.image
            and t["Status"]["State"] in ("failed", "rejected")
        ]
        if len(crashed) >= CRASH_LOOP_FAILURES:
            reason = crashed[-1]["Status"].get("Err") or crashed[-1]["Status"]["Message"]
            raise DeployFailed(
                f"{len(crashed)} tasks of {version.version} failed to start (last: {reason})"
            )
        workload = self._workload(role, service, tasks)
        if self.clock() > move.deadline:
            raise DeployFailed(
                f"{name} did not reach {version.version} within "
                f"{self.settings.deploy_timeout:g}s: {workload.ready}/{workload.desired} "
                "tasks running it"
            )
        return workload

    def _converged(self, role: Role, workload: Workload) -> bool:
        service = self._service(role)
        tasks = self._tasks(service)
        state = (service.get("UpdateStatus") or {}).get("State")
        stale = self._moves.get(role)
        if stale and _update_started(service) == stale.stale_update:
            state = None
        # Tasks on their way out still answer until their containers stop.
        serving = [t for t in tasks if t["Status"]["State"] == "running"]
        return (workload.ready >= workload.desired and len(serving) == workload.ready
                and state not in ("updating", "rollback_started"))

    def wait(self, role: Role, version: Version, progress: Progress, ready: int = 0) -> None:
        """Poll until `ready` replicas (0: every replica, and nothing else) run `version`."""

        def look() -> tuple[bool, str]:
            workload = self.watch(role, version)
            done = (workload.ready >= ready) if ready else self._converged(role, workload)
            return done, (f"{self.service_name(role)}: {workload.ready}/{workload.desired} "
                          f"tasks running {version.version}")

        follow(look, progress, self.poll_seconds)


def _update_started(service: dict) -> str | None:
    return (service.get("UpdateStatus") or {}).get("StartedAt")
