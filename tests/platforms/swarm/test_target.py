"""SwarmTarget against the local stack's real single-node Swarm.

Every test works on its own service, `ferryman-test-<hex>`, made from a copy of the demo's
release spec and stack file, and removes it at the end. The images are built locally from
examples/demo-app and referenced by image ID, so Swarm never tries to pull them. The `demo`
service that releases run against is never touched.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from tasks.errors import DeployFailed, TargetError
from tasks.platforms import get_target
from tasks.platforms.swarm.replicas import SwarmReplicasRouter
from tasks.platforms.swarm.target import SwarmTarget
from tasks.spec import ReleaseSpec, parse_spec
from tasks.targets import InFlight, Role
from tasks.targets.base import Version
from tests.helpers import Lines

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("swarm-target")]

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "deployments" / "demo"
CONTEXT = ROOT / "examples" / "demo-app"
IMAGE_REPOSITORY = "ferryman-test/swarm"
REPLICAS = 2
# Upper bound for waiting on Swarm to settle by itself (its own rollback); never asserted on.
SETTLE_SECONDS = 60.0
IN_PROGRESS = {"updating", "rollback_started"}


# -- shared fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_client():
    client = docker.from_env(timeout=60)
    try:
        state = client.info()["Swarm"]["LocalNodeState"]
    except (docker.errors.DockerException, OSError) as e:
        pytest.fail(f"dockerd is not answering ({e}); run `ferryman stack up`")
    if state != "active":
        pytest.fail(f"Swarm is {state!r}, not active; run `ferryman stack up`")
    yield client
    client.close()


@pytest.fixture(scope="module")
def created_services(docker_client, images):
    """Names of the services this module made; at the end, wait for their containers to go.

    Depends on `images` so that it is torn down first: the images are removed once no
    container uses them any more.
    """
    names: list[str] = []
    yield names
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and any(
        # The low-level call: containers.list() inspects each one and trips on removals.
        docker_client.api.containers(
            all=True, filters={"label": f"com.docker.swarm.service.name={name}"}
        )
        for name in names
    ):
        time.sleep(0.5)


@pytest.fixture(scope="module")
def images(docker_client) -> dict[str, Version]:
    """Three local images of the demo app: two that run, one that exits at start."""
    if not (CONTEXT / "demo-app").is_file():
        subprocess.run(["sh", str(CONTEXT / "build.sh")], check=True)
    variants = {
        "good": {},
        "good2": {},
        "crash": {"CRASH_ON_START": "1"},
    }
    built = {}
    for version, extra in variants.items():
        image, _ = docker_client.images.build(
            path=str(CONTEXT), tag=f"{IMAGE_REPOSITORY}:{version}",
            buildargs={"VERSION": version, **extra}, rm=True, forcerm=True,
        )
        built[version] = Version(version, image.id)
    assert len({v.image for v in built.values()}) == len(built), "test images must differ"
    yield built
    for version in variants:
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(f"{IMAGE_REPOSITORY}:{version}")


@pytest.fixture
def service_name(docker_client, created_services):
    """A unique service name; the service is removed afterwards, whatever the test did."""
    name = f"ferryman-test-{secrets.token_hex(4)}"
    created_services.append(name)
    yield name
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.services.get(name).remove()


def write_spec(tmp_path: Path, name: str, service_changes: dict | None = None,
               stack_secrets: dict | None = None, **target: object) -> ReleaseSpec:
    """The demo's release spec and stack file, renamed to `name` and made faster."""
    stack = yaml.safe_load((DEMO / "stack.yml").read_text())
    if stack_secrets:
        stack["secrets"] = stack_secrets
    service = stack["services"].pop("demo")
    service.update(service_changes or {})
    service["environment"]["APP"] = name
    service["stop_grace_period"] = "2s"
    service["deploy"]["replicas"] = REPLICAS
    service["deploy"]["rollback_config"]["monitor"] = "1s"
    stack["services"][name] = service
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(yaml.safe_dump(stack, sort_keys=False))

    data = yaml.safe_load((DEMO / "release.yaml").read_text())
    data["app"] = name
    data["target"].update({
        "service": name,
        "stack_file": str(stack_file),
        "deploy_timeout": "60s",
        # Through the spec's override rather than the stack file, so the merge is exercised.
        "update_config": {"monitor": "2s", "delay": "0s", **target.pop("update_config", {})},
        **target,
    })
    return parse_spec(data, DEMO, "test")


@pytest.fixture
def make_target(tmp_path, service_name, docker_client) -> Callable[..., SwarmTarget]:
    def make(service_changes: dict | None = None, stack_secrets: dict | None = None,
             **target: object) -> SwarmTarget:
        kwargs = {k: target.pop(k) for k in ("clock",) if k in target}
        spec = write_spec(tmp_path, service_name, service_changes, stack_secrets, **target)
        return SwarmTarget(spec.app, spec.target, auth=None, client=docker_client,
                           poll_seconds=0.5, **kwargs)

    return make


@pytest.fixture
def target(make_target) -> SwarmTarget:
    return make_target()


MARK = InFlight("test-run", "next", "2026-11-27T00:00:00+00:00")


def deploy(target: SwarmTarget, new: Version, restore_point: Version | None,
           progress: Lines | None = None) -> None:
    """What a rolling release does to the stable service: mark it, then move it."""
    target.mark(MARK, restore_point)
    target.run(Role.STABLE, new, target.replicas, progress if progress is not None else Lines())


# -- helpers ------------------------------------------------------------------------------


def service_attrs(client, name: str) -> dict:
    return client.services.get(name).attrs


def all_tasks(client, name: str) -> list[dict]:
    return client.services.get(name).tasks()


def live_tasks(client, name: str) -> list[dict]:
    """Tasks Swarm wants running (not the ones it is shutting down or gave up on)."""
    return [t for t in all_tasks(client, name) if t["DesiredState"] == "running"]


def images_running(client, name: str) -> list[tuple[str, str]]:
    """(image, state) of every live task, sorted: easy to compare with an expectation."""
    return sorted(
        (t["Spec"]["ContainerSpec"]["Image"], t["Status"]["State"])
        for t in live_tasks(client, name)
    )


def all_on(version: Version) -> list[tuple[str, str]]:
    return [(version.image, "running")] * REPLICAS


def runs_only(client, name: str, version: Version) -> bool:
    """Every live task runs `version`, and at least the desired number of them.

    "At least": after Swarm's own rollback of a crashing update, with start-first order and
    a restart policy, Swarm can leave an extra task in a slot (moby/moby#41804,
    moby/swarmkit#2242); that is Swarm's doing, not the target's.
    """
    running = images_running(client, name)
    return len(running) >= REPLICAS and set(running) == {(version.image, "running")}


def wait_until_settled(client, name: str, version: Version) -> None:
    """Poll until Swarm's own update/rollback is over and only `version` runs.

    Returns either way after SETTLE_SECONDS; the caller asserts on what it then reads.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        state = (service_attrs(client, name).get("UpdateStatus") or {}).get("State")
        if state not in IN_PROGRESS and runs_only(client, name, version):
            return
        time.sleep(0.5)


def wait_until_no_update_runs(client, name: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        state = (service_attrs(client, name).get("UpdateStatus") or {}).get("State")
        if state not in IN_PROGRESS:
            return
        time.sleep(0.5)


# -- tests --------------------------------------------------------------------------------


def test_get_target_builds_a_swarm_target_for_the_specs_service(
    tmp_path, service_name, docker_client
):
    spec = write_spec(tmp_path, service_name)

    target = get_target(spec, auth=None, client=docker_client)

    assert isinstance(target, SwarmTarget)
    assert target.name == service_name
    assert target.definition.networks == ("ferryman",)
    assert target.replicas == REPLICAS
    assert target.status().exists is False


def test_finish_and_restore_of_a_missing_service(target, images):
    target.unmark(images["good"])  # nothing to record on: a no-op
    with pytest.raises(TargetError, match="vanished"):
        target.restore(images["good"], Lines())


def test_first_deploy_creates_service_running_the_version_with_no_stable(
    target, images, docker_client, service_name
):
    good = images["good"]
    assert target.status().exists is False
    progress = Lines()

    deploy(target, good, None, progress)

    status = target.status()
    assert status.exists
    assert status.current == good
    assert status.stable is None and status.previous is None
    assert status.restore_point() is None
    assert status.desired_replicas == REPLICAS
    assert status.running_replicas == REPLICAS
    assert status.in_flight == MARK  # a first install is marked with the new service
    # run returned only once every replica ran the version.
    assert images_running(docker_client, service_name) == all_on(good)
    assert progress[0] == f"creating service {service_name} at good ({REPLICAS} replicas)"
    assert progress[-1] == f"{service_name}: {REPLICAS}/{REPLICAS} tasks running good"

    spec = service_attrs(docker_client, service_name)["Spec"]
    assert spec["Labels"]["ferryman.managed"] == "true"
    assert spec["Labels"]["ferryman.app"] == service_name
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert f"APP={service_name}" in container["Env"]
    assert container["Labels"]["ferryman.app"] == service_name
    ferryman_network = docker_client.networks.get("ferryman").id
    assert [n["Target"] for n in spec["TaskTemplate"]["Networks"]] == [ferryman_network]
    # The stack file's update_config with the spec's overrides (monitor, delay) on top.
    update = spec["UpdateConfig"]
    assert update["Monitor"] == 2_000_000_000 and update.get("Delay", 0) == 0
    assert update["Parallelism"] == 1
    assert update["Order"] == "start-first" and update["FailureAction"] == "pause"
    assert spec["RollbackConfig"]["Order"] == "start-first"


def test_deploy_records_restore_point_and_runs_new_version_on_every_replica(
    target, images, docker_client, service_name
):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    progress = Lines()

    deploy(target, good2, good, progress)

    status = target.status()
    assert status.current == good2
    assert status.previous == good and status.stable == good
    assert status.running_replicas == REPLICAS
    assert status.unjudged()
    assert images_running(docker_client, service_name) == all_on(good2)
    labels = service_attrs(docker_client, service_name)["Spec"]["Labels"]
    assert labels["ferryman.previous.version"] == "good"
    assert labels["ferryman.previous.image"] == good.image
    assert labels["ferryman.release.run"] == "test-run"
    assert progress[0] == f"updating service {service_name} to good2 ({REPLICAS} replicas)"
    assert progress[-1] == f"{service_name}: {REPLICAS}/{REPLICAS} tasks running good2"


def test_finish_sets_stable_and_clears_the_mark_without_restarting_tasks(
    target, images, docker_client, service_name
):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    deploy(target, good2, good)
    tasks_before = sorted(t["ID"] for t in all_tasks(docker_client, service_name))
    template_before = service_attrs(docker_client, service_name)["Spec"]["TaskTemplate"]

    target.unmark(good2)

    status = target.status()
    assert status.stable == good2 and status.current == good2
    assert status.in_flight is None and not status.unjudged()
    # The task template is what Swarm compares to decide on restarts: it must not change.
    assert service_attrs(docker_client, service_name)["Spec"]["TaskTemplate"] == template_before
    wait_until_no_update_runs(docker_client, service_name)
    assert sorted(t["ID"] for t in all_tasks(docker_client, service_name)) == tasks_before


def test_marking_a_release_restarts_nothing(target, images, docker_client, service_name):
    deploy(target, images["good"], None)
    target.unmark(images["good"])
    tasks_before = sorted(t["ID"] for t in all_tasks(docker_client, service_name))

    target.mark(MARK, images["good"])

    assert target.status().in_flight == MARK
    wait_until_no_update_runs(docker_client, service_name)
    assert sorted(t["ID"] for t in all_tasks(docker_client, service_name)) == tasks_before


def test_restores_the_recorded_version_with_its_whole_definition(
    make_target, tmp_path, images, docker_client, service_name
):
    """A release applies the stack file's whole service (an environment edit arrives with
    it), and a rollback puts back the definition the stable version ran with."""
    good, good2 = images["good"], images["good2"]
    target = make_target({"environment": {"GREETING": "old"}})
    deploy(target, good, None)
    target.unmark(good)
    edited = make_target({"environment": {"GREETING": "new"}})
    deploy(edited, good2, good)
    assert "GREETING=new" in container_env(docker_client, service_name)
    progress = Lines()

    edited.restore(good, progress)

    status = edited.status()
    assert status.current == good and status.running_replicas == REPLICAS
    assert images_running(docker_client, service_name) == all_on(good)
    assert "GREETING=old" in container_env(docker_client, service_name)
    assert progress[0] == f"restoring service {service_name} to good"
    # The rollback used the stack file's rollback_config: all replicas at once.
    assert service_attrs(docker_client, service_name)["Spec"]["UpdateConfig"]["Parallelism"] == 0


def container_env(client, name: str) -> list[str]:
    return service_attrs(client, name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]


def test_a_healthcheck_gates_readiness(make_target, images, docker_client, service_name):
    """A task counts only once its HEALTHCHECK passes, as Swarm counts it; one that never
    passes never converges."""
    healthy = {"healthcheck": {"test": ["CMD", "/demo-app", "-check"], "interval": "1s",
                               "timeout": "1s", "retries": 2, "start_period": "1s"}}
    target = make_target(healthy)
    deploy(target, images["good"], None)
    assert target.status().running_replicas == REPLICAS
    spec = service_attrs(docker_client, service_name)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert spec["Healthcheck"]["Test"] == ["CMD", "/demo-app", "-check"]

    sick = make_target({"healthcheck": {**healthy["healthcheck"],
                                        "test": ["CMD", "/no-such-binary"]}},
                       deploy_timeout="25s")
    with pytest.raises(DeployFailed, match="good2"):
        deploy(sick, images["good2"], images["good"])


def test_secrets_and_resources_reach_the_task(make_target, images, docker_client, service_name):
    secret = docker_client.secrets.create(name=f"{service_name}-token", data=b"s3cret")
    try:
        target = make_target({
            "secrets": [{"source": "token", "target": "token.txt", "mode": 0o400}],
            "deploy": {**yaml.safe_load((DEMO / "stack.yml").read_text())["services"]["demo"]
                       ["deploy"], "replicas": REPLICAS,
                       "resources": {"limits": {"memory": "64M"}}},
        }, stack_secrets={"token": {"external": True, "name": f"{service_name}-token"}})
        deploy(target, images["good"], None)
        task = service_attrs(docker_client, service_name)["Spec"]["TaskTemplate"]
        [reference] = task["ContainerSpec"]["Secrets"]
        assert reference["SecretID"] == secret.id and reference["File"]["Name"] == "token.txt"
        assert task["Resources"]["Limits"]["MemoryBytes"] == 64 * 1024**2
        assert target.status().running_replicas == REPLICAS
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.services.get(service_name).remove()
        _wait_gone(docker_client, service_name)
        secret.remove()


def _wait_gone(client, name: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and client.api.containers(
            all=True, filters={"label": f"com.docker.swarm.service.name={name}"}):
        time.sleep(0.5)


def test_paused_update_fails_deploy_and_restore_brings_back_exactly_the_stable_replicas(
    make_target, images, docker_client, service_name
):
    target = make_target(update_config={"failure_action": "pause"})
    good, crash = images["good"], images["crash"]
    deploy(target, good, None)
    target.unmark(good)

    with pytest.raises(DeployFailed, match=r"Swarm paused the update of .* to crash"):
        deploy(target, crash, good)
    assert target.status().restore_point() == good

    target.restore(good, Lines())

    assert runs_only(docker_client, service_name, good), images_running(
        docker_client, service_name
    )
    status = target.status()
    assert status.current == good
    assert status.running_replicas == status.desired_replicas == REPLICAS


def test_crash_loop_fails_deploy_naming_the_version_and_restore_brings_back_stable(
    make_target, images, docker_client, service_name
):
    # failure_action: continue, so Swarm never gives up and only crash-loop detection stops it.
    target = make_target(update_config={"failure_action": "continue"})
    good, good2, crash = images["good"], images["good2"], images["crash"]
    deploy(target, good, None)
    target.unmark(good)
    deploy(target, good2, good)
    target.unmark(good2)

    with pytest.raises(DeployFailed, match=r"tasks of crash failed to start"):
        deploy(target, crash, good2)

    status = target.status()
    assert status.current == crash
    assert status.stable == good2 and status.previous == good2
    assert status.restore_point() == good2

    target.restore(status.restore_point(), Lines())

    assert runs_only(docker_client, service_name, good2), images_running(
        docker_client, service_name
    )
    status = target.status()
    assert status.current == good2
    assert status.running_replicas >= REPLICAS


def test_watch_follows_a_rolling_update_and_sees_the_first_new_replica(
    target, images, docker_client, service_name
):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    target.mark(MARK, good)
    target.run(Role.STABLE, good2, REPLICAS, Lines(), wait=False)

    target.wait(Role.STABLE, good2, Lines(), ready=1)

    assert target.watch(Role.STABLE, good2).ready >= 1
    target.wait(Role.STABLE, good2, Lines())
    assert images_running(docker_client, service_name) == all_on(good2)


def test_deploy_that_does_not_converge_fails_after_deploy_timeout(make_target, images):
    # The clock jumps past the deadline after the first reading, so the first poll that
    # finds the service not converged ends the wait; the crashing image cannot converge.
    ticks = itertools.chain([0.0], itertools.repeat(1e9))
    target = make_target(clock=lambda: next(ticks))

    with pytest.raises(DeployFailed, match=r"did not reach crash within 60s: 0/2 tasks"):
        deploy(target, images["crash"], None)

    assert target.status().exists


def test_removing_the_stable_service_of_a_first_install(
    target, images, docker_client, service_name
):
    deploy(target, images["good"], None)
    progress = Lines()

    target.remove(Role.STABLE, progress)

    assert target.status().exists is False
    with pytest.raises(docker.errors.NotFound):
        docker_client.services.get(service_name)
    assert progress == [f"removing service {service_name}"]
    target.remove(Role.STABLE, progress)  # nothing left to remove: a no-op, not an error
    assert target.status().exists is False


# -- canary and preview services, and the router ------------------------------------------


def test_canary_joins_the_apps_address_with_the_routers_share(
    target, images, docker_client, service_name
):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    router = SwarmReplicasRouter(target)
    target.run(Role.CANARY, good2, 0, Lines())

    share = router.set_weight(33, Lines())

    assert share == pytest.approx(100 / 3)
    canary = f"{service_name}-canary"
    spec = service_attrs(docker_client, canary)["Spec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == 1
    assert [n["Aliases"] for n in spec["TaskTemplate"]["Networks"]] == [[service_name]]
    assert spec["Labels"]["ferryman.role"] == "canary"
    status = target.status()
    assert status.workload(Role.CANARY).ready == 1
    assert status.workload(Role.CANARY).on_app_address
    assert status.current == good and status.running_replicas == REPLICAS
    target.remove(Role.CANARY, Lines())
    assert target.status().workload(Role.CANARY) is None
    _wait_gone(docker_client, canary)


def test_switch_to_the_preview_and_back(target, images, docker_client, service_name):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    router = SwarmReplicasRouter(target)
    target.run(Role.PREVIEW, good2, REPLICAS, Lines())
    preview = f"{service_name}-preview"
    assert not target.status().workload(Role.PREVIEW).on_app_address

    router.switch(Role.PREVIEW, Lines())

    status = target.status()
    assert status.workload(Role.PREVIEW).on_app_address
    assert status.workload(Role.PREVIEW).ready == REPLICAS
    assert status.workload(Role.STABLE).desired == 0
    assert not live_tasks(docker_client, service_name)
    aliases = service_attrs(docker_client, preview)["Spec"]["TaskTemplate"]["Networks"]
    assert [n["Aliases"] for n in aliases] == [[service_name]]

    router.switch(Role.STABLE, Lines())

    status = target.status()
    assert status.running_replicas == REPLICAS and status.current == good
    assert status.workload(Role.PREVIEW).desired == 0
    target.remove(Role.PREVIEW, Lines())
    _wait_gone(docker_client, preview)
