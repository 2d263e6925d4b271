"""The Docker API calls the Swarm target makes, each a plain dict in and out, and their errors
turned into Ferryman's (a 5xx or no answer: TargetUnavailableError; a refusal: TargetError).

One narrow class, so that the fast tests replace the engine with an in-memory swarm
(tests/platforms/swarm/fake_api.py) and the real SwarmTarget runs over it.
"""

from __future__ import annotations

from collections.abc import Callable

import docker
import docker.errors

from tasks.errors import TargetError, TargetUnavailableError


class SwarmApi:
    """A Swarm manager's services, their tasks and containers, through the docker SDK."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    @classmethod
    def connect(cls, docker_host: str | None) -> SwarmApi:
        """The engine at `docker_host` (DOCKER_HOST and the like when None)."""
        try:
            if docker_host:
                return cls(docker.DockerClient(base_url=docker_host, timeout=60))
            return cls(docker.from_env(timeout=60))
        except docker.errors.DockerException as e:
            raise TargetUnavailableError(f"cannot reach the Docker engine: {e}") from e

    def call(self, fn: Callable, doing: str):
        """Call the engine; its errors become Ferryman's. NotFound goes through as it is."""
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

    def login(self, username: str, password: str, registry: str) -> None:
        """Stored on the client, so create/update send X-Registry-Auth and nodes can pull."""
        self.call(lambda: self.client.login(username=username, password=password,
                                            registry=registry),
                  "log in to the registry for image pulls")

    def service(self, name: str) -> dict | None:
        """The service as the engine inspects it (ID, Version, Spec, UpdateStatus), or None."""
        try:
            return self.call(lambda: self.client.api.inspect_service(name),
                             f"read service {name}")
        except docker.errors.NotFound:
            return None

    def tasks(self, service: dict) -> list[dict]:
        """The service's tasks, as `docker service ps` lists them."""
        return self.call(lambda: self.client.api.tasks(filters={"service": service["ID"]}),
                         "list the service's tasks")

    def create(self, name: str, template: dict, labels: dict[str, str], replicas: int,
               update_config: dict, rollback_config: dict, endpoint_spec: dict) -> None:
        """Create a replicated service."""
        self.call(lambda: self.client.api.create_service(
            template, name=name, labels=labels,
            mode=docker.types.ServiceMode("replicated", replicas=replicas),
            update_config=update_config, rollback_config=rollback_config,
            endpoint_spec=endpoint_spec,
        ), f"create service {name}")

    def update(self, service: dict, spec: dict, doing: str) -> None:
        """Send `spec` as the service's whole new spec, at the version read.

        Through the low-level API: the SDK's Service.update re-reads the spec with defaults
        filled in (Resources={}, DNSConfig={}), which Swarm takes for a new task template and
        answers with a restart of every replica.
        """
        self.call(lambda: self.client.api.update_service(
            service["ID"], service["Version"]["Index"],
            task_template=spec["TaskTemplate"], name=spec["Name"], labels=spec.get("Labels"),
            mode=spec.get("Mode"), update_config=spec.get("UpdateConfig"),
            rollback_config=spec.get("RollbackConfig"), endpoint_spec=spec.get("EndpointSpec"),
        ), doing)

    def remove(self, service: dict) -> None:
        name = service["Spec"]["Name"]
        self.call(lambda: self.client.api.remove_service(service["ID"]),
                  f"remove service {name}")

    def containers_of(self, service: dict) -> list[dict]:
        """The containers of the service's tasks that still exist on this node."""
        return self.call(lambda: self.client.api.containers(filters={
            "label": f"com.docker.swarm.service.id={service['ID']}"}),
            "list the service's containers")

    def reference(self, kind: str, name: str) -> str | None:
        """The swarm ID of the secret or config named exactly `name`, or None."""
        listing = self.client.api.secrets if kind == "secret" else self.client.api.configs
        found = [o for o in self.call(lambda: listing(filters={"name": name}),
                                      f"look up {kind} {name}")
                 if o["Spec"]["Name"] == name]
        return found[0]["ID"] if found else None
