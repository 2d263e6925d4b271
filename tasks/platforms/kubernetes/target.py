"""Kubernetes target: an app's workloads are Deployments, driven by the official client.

The stable workload is the Deployment named by `target.deployment`, behind the Service
`target.service`. During a release a canary (`<deployment>-canary`) or a preview
(`<deployment>-preview`) Deployment runs beside it, made from the stable one's pod template:
a canary's pods keep every label (so the app's Service sends them their share) and add
`ferryman.io/role: canary`; a preview's pods lose the keys of the app's Service's selector
(so it never reaches them) and are selected by `<service>-preview` alone.

What ran before, the last promoted version (with its whole pod template) and the mark of a
release in flight are annotations on the stable Deployment object, written in the same
request that changes it: a JSON patch that also carries the resourceVersion it was computed
from, so a concurrent change makes it fail with 409 and it is computed again from a fresh
read. Annotations on the Deployment, not on its pod template: marking a release restarts
no pod.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubernetes import client as k8s

from tasks.errors import DeployFailed, TargetError
from tasks.platforms.kubernetes.api import KubernetesApi, connect
from tasks.platforms.kubernetes.manifests import Manifests, container_index, load_manifests
from tasks.platforms.kubernetes.rollout import pod_ready, rollout, stuck_pods
from tasks.platforms.kubernetes.spec import KubernetesTargetSpec
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

if TYPE_CHECKING:
    from tasks.registries import RegistryAuth

PREFIX = "ferryman.io/"
APP_LABEL = f"{PREFIX}app"
ROLE_LABEL = f"{PREFIX}role"
MANAGED = f"{PREFIX}{records.MANAGED}"
TEMPLATE = records.TEMPLATE
"""Annotation suffix holding a version's whole pod template (JSON)."""
STRATEGY = f"{PREFIX}strategy"
"""The Deployment's own update strategy, kept while a restore runs all at once."""
SELECTOR = f"{PREFIX}selector"
"""On the app's Service: its own selector, kept while it leads to the preview's pods."""
ALL_AT_ONCE = {"type": "RollingUpdate",
               "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}}
"""Canary, preview and restores: every new pod at once, none of the old ones taken away
before the new ones are available."""


# -- pure: the objects Ferryman writes ----------------------------------------------------


def role_selector(app: str, role: Role) -> dict[str, str]:
    """The labels that pick a canary's or a preview's pods, and nothing else."""
    return {APP_LABEL: app, ROLE_LABEL: role.value}


def template_for(role: Role, stable: dict, service_selector: dict[str, str], app: str,
                 image: str, index: int) -> dict:
    """A role's pod template, made from the stable Deployment's, running `image`.

    STABLE: the same template with the image changed. CANARY and PREVIEW: its labels less
    the keys of the app's Service's selector, plus the role's, so the Service does not reach
    them until the router says (the canary's share, the switch).
    """
    template = copy.deepcopy(stable)
    template["spec"]["containers"][index]["image"] = image
    if role is Role.STABLE:
        return template
    metadata = template.setdefault("metadata", {})
    labels = dict(metadata.get("labels") or {})
    labels = {k: v for k, v in labels.items() if k not in service_selector}
    metadata["labels"] = labels | role_selector(app, role)
    return template


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a Service's selector picks pods with `labels` (an empty one picks none)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# -- the target ----------------------------------------------------------------------------


@dataclass
class _Move:
    """What a role looked like before a change, so `watch` judges this change only."""

    pods_before: set[str]
    deadline: float


class KubernetesTarget:
    """The Deployments of one app, and the Services in front of them."""

    def __init__(self, app: str, settings: KubernetesTargetSpec,
                 client: k8s.ApiClient | KubernetesApi | None = None,
                 poll_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 auth: RegistryAuth | None = None) -> None:
        """`client`: an API client (None: from the spec's kubeconfig, block or the pod's
        ServiceAccount), or a `KubernetesApi` itself (the fast tests' in-memory one).
        `auth` is not used: pods pull with the namespace's imagePullSecrets, as the
        cluster's own users' do, so the registry credentials are not the target's to give."""
        self.app = app
        self.settings = settings
        self.name = settings.deployment
        self.service = settings.service
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.manifests: Manifests | None = None
        if settings.manifests is not None:
            self.manifests = load_manifests(settings.manifests, self.name, settings.namespace,
                                            settings.container)
        if isinstance(client, KubernetesApi):
            self.namespace, self.k8s = client.namespace, client
        else:
            context_namespace = None
            if client is None:
                client, context_namespace = connect(settings)
            self.namespace = settings.namespace or context_namespace or "default"
            self.k8s = KubernetesApi(client, self.namespace)
        self._replicas = self.manifests.replicas if self.manifests else None
        self._moves: dict[Role, _Move] = {}
        self._pending_mark: dict[str, str] = {}

    @property
    def replicas(self) -> int:
        """The stable Deployment's size: the manifests', else the cluster's (read once)."""
        if self._replicas is None:
            stable = self.k8s.read("deployment", self.name)
            self._replicas = (stable or {}).get("spec", {}).get("replicas", 1)
        return self._replicas

    def deployment_name(self, role: Role) -> str:
        """`demo`, `demo-canary`, `demo-preview`."""
        return self.name if role is Role.STABLE else f"{self.name}-{role.value}"

    # -- reading ---------------------------------------------------------------------------

    def _index(self, template: dict) -> int:
        return container_index(template, self.settings.container,
                               f"deployment {self.name}: spec.template")

    def _image(self, template: dict) -> str:
        return template["spec"]["containers"][self._index(template)]["image"]

    def _version(self, deployment: dict) -> Version:
        annotations = deployment["metadata"].get("annotations") or {}
        image = self._image(deployment["spec"]["template"])
        recorded = records.version_of(annotations, PREFIX, "")
        return recorded if recorded and recorded.image == image \
            else Version(records.tag_of(image), image)

    def main_selector(self) -> dict[str, str]:
        """The app's Service's own selector (what it selects when not switched)."""
        service = self.k8s.read("service", self.service)
        if service is None:
            return {}
        kept = (service["metadata"].get("annotations") or {}).get(SELECTOR)
        return json.loads(kept) if kept else dict(service["spec"].get("selector") or {})

    def _workload(self, role: Role, deployment: dict, pods: list[dict],
                  address: dict[str, str]) -> Workload:
        version = self._version(deployment)
        index = self._index(deployment["spec"]["template"])
        ready = [p for p in pods if pod_ready(p)
                 and p["spec"]["containers"][index]["image"] == version.image]
        desired = deployment["spec"].get("replicas", 1)
        labels = deployment["spec"]["template"].get("metadata", {}).get("labels") or {}
        return Workload(role, version, desired, len(ready),
                        desired > 0 and selects(address, labels))

    def status(self) -> TargetStatus:
        """Read every role's Deployment and the stable one's annotations; `exists=False` if
        there is no stable Deployment."""
        service = self.k8s.read("service", self.service)
        address = dict((service or {}).get("spec", {}).get("selector") or {})
        workloads, stable = [], None
        for role in Role:
            deployment = self.k8s.read("deployment", self.deployment_name(role))
            if deployment is None:
                continue
            if role is Role.STABLE:
                stable = deployment
            pods = self.k8s.pods_of(deployment)
            workloads.append(self._workload(role, deployment, pods, address))
        if stable is None:
            return TargetStatus(exists=False, workloads=tuple(workloads))
        annotations = stable["metadata"].get("annotations") or {}
        main = workloads[0]
        state = rollout(stable)
        return TargetStatus(
            exists=True,
            current=main.version,
            stable=records.version_of(annotations, PREFIX, "stable."),
            previous=records.version_of(annotations, PREFIX, "previous."),
            desired_replicas=main.desired,
            running_replicas=main.ready,
            update_state="failed" if state.failed else "completed" if state.done
            else "updating",
            in_flight=records.mark_of(annotations, PREFIX),
            workloads=tuple(workloads),
        )

    # -- changing --------------------------------------------------------------------------

    def _start(self, role: Role, deployment: dict | None) -> None:
        self._moves[role] = _Move(
            pods_before={p["metadata"]["name"] for p in self.k8s.pods_of(deployment)}
            if deployment else set(),
            deadline=self.clock() + self.settings.deploy_timeout,
        )

    def mark(self, in_flight: InFlight, restore_point: Version | None) -> None:
        """Annotate the stable Deployment with the release's mark and its restore point."""
        if self.k8s.read("deployment", self.name) is None:  # a first install: with the apply
            self._pending_mark = records.mark_entries(PREFIX, in_flight)
            return

        def change(deployment: dict) -> list[dict]:
            before = deployment["metadata"].get("annotations") or {}
            annotations = records.marked(before, PREFIX, in_flight, restore_point)
            template = deployment["spec"]["template"]
            if (restore_point is not None and MANAGED not in before
                    and self._image(template) == restore_point.image):
                # A Deployment Ferryman did not make: its template is the stable one's.
                annotations[f"{PREFIX}stable.{TEMPLATE}"] = as_json(template)
            return [_annotations(annotations)]

        self.k8s.modify("deployment", self.name, change,
                     "mark the Deployment with the release in flight")

    def run(self, role: Role, version: Version, replicas: int, progress: Progress,
            wait: bool = True) -> None:
        """Create the role's Deployment or move it to `version`: the stable one with its own
        rolling update (the image patched by digest, with the restore point's annotations in
        the same request), the others all at once."""
        name = self.deployment_name(role)
        current = self.k8s.read("deployment", name)
        self._start(role, current)
        if role is Role.STABLE and current is None:
            self._install(version, replicas, progress)
        elif role is Role.STABLE:
            progress(f"updating Deployment {name} to {version.version} ({replicas} replicas)")
            self.k8s.modify("deployment", name, lambda d: self._update(d, version, replicas),
                         f"update Deployment {name}")
        else:
            self._run_beside(role, version, replicas, progress)
        if wait:
            self.wait(role, version, progress)

    def _update(self, deployment: dict, version: Version, replicas: int) -> list[dict]:
        """The patch moving the stable Deployment to `version`; puts back its own strategy
        if a restore was interrupted before it could."""
        index = self._index(deployment["spec"]["template"])
        template = template_for(Role.STABLE, deployment["spec"]["template"], {}, "",
                                version.image, index)
        annotations = dict(deployment["metadata"].get("annotations") or {})
        annotations |= records.version_entries(PREFIX, "", version)
        annotations[f"{PREFIX}{TEMPLATE}"] = as_json(template)
        operations = [
            {"op": "replace", "path": f"/spec/template/spec/containers/{index}/image",
             "value": version.image},
            {"op": "replace", "path": "/spec/replicas", "value": replicas},
        ]
        if STRATEGY in annotations:
            operations.append({"op": "replace", "path": "/spec/strategy",
                               "value": json.loads(annotations.pop(STRATEGY))})
        return [*operations, _annotations(annotations)]

    def _install(self, version: Version, replicas: int, progress: Progress) -> None:
        """A new app: apply its manifests, the Deployment running `version` and carrying the
        release's mark."""
        if self.manifests is None:
            raise TargetError(f"Deployment {self.name} does not exist in namespace "
                              f"{self.namespace} and the spec names no manifests to make it")
        progress(f"creating Deployment {self.name} at {version.version} ({replicas} "
                 f"replicas) from {self.manifests.folder}")
        for manifest in self.manifests.objects:
            manifest = copy.deepcopy(manifest)
            manifest["metadata"]["namespace"] = self.namespace
            if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == self.name:
                spec = manifest["spec"]
                spec["replicas"] = replicas
                index = self._index(spec["template"])
                spec["template"] = template_for(Role.STABLE, spec["template"], {}, "",
                                                version.image, index)
                annotations = manifest["metadata"].setdefault("annotations", {})
                annotations |= {MANAGED: "true"} | self._pending_mark
                annotations |= records.version_entries(PREFIX, "", version)
                annotations[f"{PREFIX}{TEMPLATE}"] = as_json(spec["template"])
            self.k8s.apply(manifest)

    def _run_beside(self, role: Role, version: Version, replicas: int,
                    progress: Progress) -> None:
        """Apply the canary's or preview's Deployment (and a preview's Service)."""
        stable = self.k8s.read("deployment", self.name)
        if stable is None:
            raise TargetError(f"Deployment {self.name} does not exist; a {role.value} is "
                              "made from its pod template")
        address = self.main_selector()
        if not address:
            raise TargetError(f"Service {self.service} does not exist in namespace "
                              f"{self.namespace} or selects nothing; a {role.value} needs "
                              "the app's Service")
        name = self.deployment_name(role)
        template = template_for(role, stable["spec"]["template"], address, self.app,
                                version.image, self._index(stable["spec"]["template"]))
        selector = role_selector(self.app, role)
        spec = {"replicas": replicas, "selector": {"matchLabels": selector},
                "template": template, "strategy": ALL_AT_ONCE}
        for key in ("progressDeadlineSeconds", "minReadySeconds"):
            if key in stable["spec"]:
                spec[key] = stable["spec"][key]
        progress(f"applying Deployment {name} at {version.version} ({replicas} replicas)")
        self.k8s.apply({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": selector, "annotations": {
                MANAGED: "true", **records.version_entries(PREFIX, "", version)}},
            "spec": spec,
        })

    def restore(self, to: Version, progress: Progress) -> None:
        """Put the stable Deployment back on `to` with the pod template it was promoted with
        (its current template with `to`'s image if none is recorded), every replica at once
        (maxSurge 100%, maxUnavailable 0), then give it back its own update strategy."""
        stable = self.k8s.read("deployment", self.name)
        if stable is None:
            raise TargetError(f"Deployment {self.name} vanished; nothing to restore")

        def change(deployment: dict) -> list[dict]:
            annotations = dict(deployment["metadata"].get("annotations") or {})
            template = None
            if records.version_of(annotations, PREFIX, "stable.") == to:
                recorded = annotations.get(f"{PREFIX}stable.{TEMPLATE}")
                template = json.loads(recorded) if recorded else None
            if template is None:
                current = deployment["spec"]["template"]
                template = template_for(Role.STABLE, current, {}, "", to.image,
                                        self._index(current))
            annotations |= records.version_entries(PREFIX, "", to)
            annotations[f"{PREFIX}{TEMPLATE}"] = as_json(template)
            annotations.setdefault(STRATEGY, as_json(deployment["spec"].get("strategy") or {}))
            return [{"op": "replace", "path": "/spec/template", "value": template},
                    {"op": "replace", "path": "/spec/replicas", "value": self.replicas},
                    {"op": "replace", "path": "/spec/strategy", "value": ALL_AT_ONCE},
                    _annotations(annotations)]

        progress(f"restoring Deployment {self.name} to {to.version}, all replicas at once")
        self._start(Role.STABLE, stable)
        self.k8s.modify("deployment", self.name, change, f"restore Deployment {self.name}")
        self.wait(Role.STABLE, to, progress)

        def own_strategy(deployment: dict) -> list[dict]:
            annotations = dict(deployment["metadata"].get("annotations") or {})
            kept = annotations.pop(STRATEGY, None)
            if kept is None:
                return []
            return [{"op": "replace", "path": "/spec/strategy", "value": json.loads(kept)},
                    _annotations(annotations)]

        self.k8s.modify("deployment", self.name, own_strategy,
                     f"give Deployment {self.name} its own update strategy back")

    def scale(self, role: Role, replicas: int, progress: Progress) -> None:
        """Set the role's replica count (its pod template untouched: no restarts); wait."""
        name = self.deployment_name(role)
        deployment = self.k8s.read("deployment", name)
        if deployment is None:
            raise TargetError(f"Deployment {name} does not exist; cannot scale it")
        progress(f"scaling Deployment {name} to {replicas} replicas")
        self._start(role, deployment)
        self.k8s.modify("deployment", name,
                     lambda d: [] if d["spec"].get("replicas") == replicas else
                     [{"op": "replace", "path": "/spec/replicas", "value": replicas}],
                     f"scale Deployment {name}")
        self.wait(role, self._version(deployment), progress)

    def reshape(self, role: Role, progress: Progress, replicas: int | None = None,
                labels: dict[str, str] | None = None) -> None:
        """One patch of a role's Deployment: its replica count and, when given, labels added
        to its pods (the router's business: which Services reach them), then wait. New
        labels make new pods; a size alone restarts none."""
        name = self.deployment_name(role)
        deployment = self.k8s.read("deployment", name)
        if deployment is None:
            raise TargetError(f"Deployment {name} does not exist")

        def change(current: dict) -> list[dict]:
            operations = []
            template = current["spec"]["template"].get("metadata") or {}
            have = dict(template.get("labels") or {})
            if labels is not None and have | labels != have:
                operations.append({"op": "add", "path": "/spec/template/metadata/labels",
                                   "value": have | labels})
            if replicas is not None and current["spec"].get("replicas") != replicas:
                operations.append({"op": "replace", "path": "/spec/replicas",
                                   "value": replicas})
            return operations

        progress(f"Deployment {name}: {replicas} replicas"
                 + (f", labelled {labels}" if labels else ""))
        self._start(role, deployment)
        self.k8s.modify("deployment", name, change, f"change Deployment {name}")
        self.wait(role, self._version(deployment), progress)

    def remove(self, role: Role, progress: Progress) -> None:
        """Delete the role's Deployment (and a preview Service Ferryman made) and wait until
        its pods are gone, and with them their place behind the Service."""
        name = self.deployment_name(role)
        deployment = self.k8s.read("deployment", name)
        if deployment is not None:
            pods = {p["metadata"]["name"] for p in self.k8s.pods_of(deployment)}
            progress(f"removing Deployment {name}")
            self.k8s.delete("deployment", name)
            self._wait_gone(name, pods)

    def _wait_gone(self, name: str, pods: set[str]) -> None:
        deadline = self.clock() + self.settings.deploy_timeout
        while pods:
            pods &= self.k8s.pod_names()
            if not pods:
                return
            if self.clock() > deadline:
                raise TargetError(f"the pods of {name} did not go within "
                                  f"{self.settings.deploy_timeout:g}s: {sorted(pods)}")
            time.sleep(self.poll_seconds)

    def unmark(self, stable: Version | None) -> None:
        """Clear the release's mark; with `stable`, record it (and its pod template) as the
        stable version. Annotations of the Deployment only: no pod restarts."""
        if self.k8s.read("deployment", self.name) is None:
            return

        def change(deployment: dict) -> list[dict]:
            return [_annotations(records.unmarked(
                deployment["metadata"].get("annotations") or {}, PREFIX, stable))]

        self.k8s.modify("deployment", self.name, change, "record the release's end")

    # -- following a change ----------------------------------------------------------------

    def watch(self, role: Role, version: Version) -> Workload:
        """One look at a role moving to `version`; raises DeployFailed when it cannot get
        there: the controller's progress deadline passed, a new pod crash-loops or cannot
        pull its image, or the spec's deploy timeout passed."""
        name = self.deployment_name(role)
        move = self._moves.get(role) or _Move(set(), self.clock() + 1e9)
        deployment = self.k8s.read("deployment", name)
        if deployment is None:
            raise DeployFailed(f"Deployment {name} was removed while deploying")
        state = rollout(deployment)
        if state.failed:
            raise DeployFailed(f"{version.version} did not roll out: {state.message}")
        pods = self.k8s.pods_of(deployment)
        index = self._index(deployment["spec"]["template"])
        stuck = stuck_pods([p for p in pods if p["metadata"]["name"] not in move.pods_before
                            and p["spec"]["containers"][index]["image"] == version.image])
        if stuck:
            raise DeployFailed(f"{len(stuck)} pod(s) of {version.version} cannot start "
                               f"(first: {stuck[0]})")
        workload = self._workload(role, deployment, pods, self.main_selector())
        if self.clock() > move.deadline:
            raise DeployFailed(
                f"{name} did not reach {version.version} within "
                f"{self.settings.deploy_timeout:g}s: {workload.ready}/{workload.desired} pods "
                f"ready ({state.message})")
        return workload

    def _converged(self, role: Role, version: Version) -> bool:
        deployment = self.k8s.read("deployment", self.deployment_name(role))
        return (deployment is not None and rollout(deployment).done
                and self._image(deployment["spec"]["template"]) == version.image)

    def wait(self, role: Role, version: Version, progress: Progress, ready: int = 0) -> None:
        """Poll until `ready` pods (0: all, with `kubectl rollout status`'s rule) serve
        `version`."""

        def look() -> tuple[bool, str]:
            workload = self.watch(role, version)
            done = (workload.ready >= ready) if ready else self._converged(role, version)
            return done, (f"{self.deployment_name(role)}: {workload.ready}/{workload.desired} "
                          f"pods ready on {version.version}")

        follow(look, progress, self.poll_seconds)


def as_json(value: object) -> str:
    """Compact JSON with sorted keys: what an annotation records."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _annotations(annotations: dict[str, str]) -> dict:
    """The JSON patch operation setting an object's whole annotations (read just before)."""
    return {"op": "add", "path": "/metadata/annotations", "value": annotations}
