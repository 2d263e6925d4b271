"""An in-memory swarm behind the `SwarmApi` calls the Swarm target makes.

It keeps services as the engine inspects them (ID, Version, Spec, UpdateStatus) and plays the
orchestrator at once: after every change a service has one running task per replica of its
task template, new tasks (new IDs) when the template changed, the same ones when only its
labels did. Tasks of an image in `broken` fail on start, as a crash loop shows in `docker
service ps`. After every change it records which images answer on the app's DNS name (the
stable service's own tasks and those of any service carrying the name as a network alias), so
a test asserts the largest share a version ever had of what users could reach.
"""

from __future__ import annotations

import copy
import json

from tasks.errors import TargetError
from tasks.platforms.swarm.api import SwarmApi


def _plain(value: object) -> object:
    """The docker SDK's types (dict subclasses) as the engine would echo them back."""
    return json.loads(json.dumps(value))


class FakeSwarmApi(SwarmApi):
    """One swarm's services and tasks, in memory."""

    def __init__(self, address: str, broken: set[str] | None = None) -> None:
        # No docker client: every call the target makes is answered below.
        self.address = address
        """The app's DNS name, whose answers `exposure` records."""
        self.broken = broken if broken is not None else set()
        """Images whose tasks fail on start."""
        self.services: dict[str, dict] = {}
        self.tasks_of: dict[str, list[dict]] = {}
        self.exposure: list[dict[str, float]] = []
        self.calls: list[str] = []
        self._serial = 0

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    # -- the calls of SwarmApi ---------------------------------------------------------------

    def login(self, username: str, password: str, registry: str) -> None:
        self.calls.append(f"login {registry}")

    def service(self, name: str) -> dict | None:
        found = self.services.get(name)
        return copy.deepcopy(found) if found is not None else None

    def tasks(self, service: dict) -> list[dict]:
        return copy.deepcopy(self.tasks_of.get(service["ID"], []))

    def create(self, name: str, template: dict, labels: dict[str, str], replicas: int,
               update_config: dict, rollback_config: dict, endpoint_spec: dict) -> None:
        if name in self.services:
            raise TargetError(f"Swarm refused to create service {name}: name conflicts")
        spec = _plain({"Name": name, "Labels": labels, "TaskTemplate": template,
                       "Mode": {"Replicated": {"Replicas": replicas}},
                       "UpdateConfig": update_config, "RollbackConfig": rollback_config,
                       "EndpointSpec": endpoint_spec})
        service = {"ID": f"service-{self._next()}", "Version": {"Index": self._next()},
                   "Spec": spec}
        self.services[name] = service
        self.tasks_of[service["ID"]] = []
        self._converge(service, template_changed=True)
        self.calls.append(f"create {name}")

    def update(self, service: dict, spec: dict, doing: str) -> None:
        current = self.services.get(service["Spec"]["Name"])
        if current is None or current["ID"] != service["ID"]:
            raise TargetError(f"Swarm refused to {doing}: service {service['ID']} not found")
        if current["Version"]["Index"] != service["Version"]["Index"]:
            raise TargetError(f"Swarm refused to {doing}: update out of sequence")
        spec = _plain(spec)
        template_changed = spec["TaskTemplate"] != current["Spec"]["TaskTemplate"]
        current["Spec"] = spec
        current["Version"] = {"Index": self._next()}
        if template_changed:
            current["UpdateStatus"] = {"State": "completed", "StartedAt": f"t{self._next()}"}
        self._converge(current, template_changed)
        self.calls.append(f"update {spec['Name']}")

    def remove(self, service: dict) -> None:
        name = service["Spec"]["Name"]
        self.services.pop(name, None)
        self.tasks_of.pop(service["ID"], None)
        self._record_exposure()
        self.calls.append(f"remove {name}")

    def containers_of(self, service: dict) -> list[dict]:
        return [{"Id": t["ID"]} for t in self.tasks_of.get(service["ID"], [])]

    def reference(self, kind: str, name: str) -> str | None:
        return None  # the apps of these tests use no secrets or configs

    # -- the orchestrator --------------------------------------------------------------------

    def _converge(self, service: dict, template_changed: bool) -> None:
        spec = service["Spec"]
        image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
        replicas = spec["Mode"]["Replicated"]["Replicas"]
        before = self.tasks_of[service["ID"]]
        tasks = [] if template_changed else before
        if image in self.broken:
            if template_changed:
                # Three failed starts, as a crash loop leaves them; the old tasks go on
                # running (the apps' updates start new tasks first).
                tasks = [t for t in before if t["Status"]["State"] == "running"]
                tasks += [self._task(image, "failed") for _ in range(3)]
                service["UpdateStatus"] = {"State": "updating",
                                           "StartedAt": f"t{self._next()}"}
        else:
            tasks = tasks[:replicas] + [self._task(image, "running")
                                        for _ in range(replicas - len(tasks))]
        self.tasks_of[service["ID"]] = tasks
        self._record_exposure()

    def _task(self, image: str, state: str) -> dict:
        return {
            "ID": f"task-{self._next()}",
            "DesiredState": "running" if state == "running" else "shutdown",
            "Status": {"State": state, "Message": state,
                       **({"Err": "task: non-zero exit (1)"} if state == "failed" else {})},
            "Spec": {"ContainerSpec": {"Image": image}},
        }

    def _record_exposure(self) -> None:
        answering = []
        for name, service in self.services.items():
            networks = service["Spec"]["TaskTemplate"].get("Networks") or []
            aliases = {a for n in networks for a in n.get("Aliases") or []}
            if name == self.address or self.address in aliases:
                answering += [t for t in self.tasks_of[service["ID"]]
                              if t["Status"]["State"] == "running"]
        shares: dict[str, float] = {}
        for task in answering:
            image = task["Spec"]["ContainerSpec"]["Image"]
            shares[image] = shares.get(image, 0.0) + 100.0 / len(answering)
        self.exposure.append(shares)

    def max_share(self, image: str) -> float:
        """The most of the app's name's answers tasks of `image` ever gave."""
        return max((e.get(image, 0.0) for e in self.exposure), default=0.0)
