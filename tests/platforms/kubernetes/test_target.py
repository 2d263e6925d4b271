"""KubernetesTarget and KubernetesRouter against the real single-node test bed.

Every test works on the app `demo-k8s` in the namespace `ferryman-demo`, as the
ServiceAccount `ferryman` (never an admin), from the demo's own manifests copied and made
quicker; the objects are deleted before and after each test. Images are the demo app built
here and pushed to the stack's registry, which the node pulls from through the namespace's
imagePullSecret. Skips, saying why, when the test bed is not up.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from tasks.errors import DeployFailed, TargetError
from tasks.platforms import get_target
from tasks.platforms.kubernetes.replicas import KubernetesReplicasRouter
from tasks.platforms.kubernetes.target import KubernetesTarget
from tasks.spec import parse_spec
from tasks.targets import InFlight, Role, Version
from tests import kubernetes_bed as bed
from tests.helpers import Lines

pytestmark = [pytest.mark.kubernetes, pytest.mark.stack]

DEMO = bed.ROOT / "deployments" / "demo-k8s"
MARK = InFlight("test-run", "next", "2026-11-27T00:00:00+00:00")


@pytest.fixture(scope="module", autouse=True)
def _test_bed_is_up() -> None:
    bed.require_up()


@pytest.fixture(scope="module")
def api():
    return bed.api_client()


@pytest.fixture(scope="module")
def images() -> dict[str, Version]:
    """good and good2 run; crash exits at start; sick runs but has no /metrics, which the
    readiness probe of `sick_manifests` asks for, so it never becomes ready."""
    return {name: bed.push_image(f"t-{name}", **args) for name, args in {
        "good": {}, "good2": {}, "crash": {"CRASH_ON_START": "1"},
        "sick": {"DISABLE_METRICS": "1"},
    }.items()}


@pytest.fixture(autouse=True)
def _clear(api):
    if bed.problem() is None:
        bed.clear(api)
    yield
    if bed.problem() is None:
        bed.clear(api)


def deployment_edit(deployment: dict) -> None:
    """Quicker to replace: pods stop at once (no preStop wait, 1 s of grace)."""
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 1
    pod["containers"][0].pop("lifecycle", None)


def write_spec(tmp_path: Path, edit=deployment_edit, **target: object):
    """The demo-k8s spec with its manifests copied to tmp_path, the Deployment changed by
    `edit`, and the test bed's `ferryman` kubeconfig."""
    manifests = tmp_path / "k8s"
    shutil.copytree(DEMO / "k8s", manifests)
    file = manifests / "deployment.yaml"
    deployment = yaml.safe_load(file.read_text())
    edit(deployment)
    file.write_text(yaml.safe_dump(deployment))
    data = yaml.safe_load((DEMO / "release.yaml").read_text())
    data["target"].update({"kubeconfig": str(bed.kubeconfig()), "manifests": str(manifests),
                           "deploy_timeout": "90s", **target})
    return parse_spec(data, DEMO, "test")


@pytest.fixture
def make_target(tmp_path, api):
    def make(edit=deployment_edit, **target) -> KubernetesTarget:
        spec = write_spec(tmp_path, edit, **target)
        return KubernetesTarget(spec.app, spec.target, poll_seconds=0.5)

    return make


@pytest.fixture
def target(make_target) -> KubernetesTarget:
    return make_target()


def deploy(target: KubernetesTarget, new: Version, restore_point: Version | None,
           progress: Lines | None = None) -> None:
    """What a rolling release does to the stable Deployment: mark it, then move it."""
    target.mark(MARK, restore_point)
    target.run(Role.STABLE, new, target.replicas, progress if progress is not None else Lines())


def read(api, kind: str, name: str = bed.APP) -> dict:
    from kubernetes import client

    if kind == "deployment":
        response = client.AppsV1Api(api).read_namespaced_deployment(
            name, bed.NAMESPACE, _preload_content=False)
    else:
        response = client.CoreV1Api(api).read_namespaced_service(
            name, bed.NAMESPACE, _preload_content=False)
    return json.loads(response.data)


def pods(api, selector: str = f"app={bed.APP}") -> list[dict]:
    """Live pods (not on their way out) matching `selector`."""
    from kubernetes import client

    items = json.loads(client.CoreV1Api(api).list_namespaced_pod(
        bed.NAMESPACE, label_selector=selector, _preload_content=False).data)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def images_of(api, selector: str = f"app={bed.APP}") -> list[str]:
    return sorted(p["spec"]["containers"][0]["image"] for p in pods(api, selector))


def annotations(api, name: str = bed.APP) -> dict:
    return read(api, "deployment", name)["metadata"].get("annotations") or {}


# -- creating and updating the stable Deployment ------------------------------------------


def test_get_target_builds_a_kubernetes_target_for_the_specs_deployment(tmp_path):
    target = get_target(write_spec(tmp_path))
    assert isinstance(target, KubernetesTarget)
    assert (target.name, target.service, target.namespace) == (bed.APP, bed.APP,
                                                               bed.NAMESPACE)
    assert target.replicas == 2
    assert target.status().exists is False


def test_a_new_app_is_created_from_its_manifests_with_server_side_apply(target, images, api):
    good = images["good"]
    progress = Lines()

    deploy(target, good, None, progress)

    status = target.status()
    assert status.exists and status.current == good
    assert status.stable is None and status.previous is None
    assert status.in_flight == MARK  # the mark went on with the apply
    assert (status.desired_replicas, status.running_replicas) == (2, 2)
    assert images_of(api) == [good.image] * 2
    deployment = read(api, "deployment")
    managers = {(m["manager"], m["operation"]) for m in deployment["metadata"]["managedFields"]}
    assert ("ferryman", "Apply") in managers
    assert deployment["metadata"]["annotations"]["ferryman.io/managed"] == "true"
    # The Services came with it, from the same folder.
    assert read(api, "service")["spec"]["clusterIP"] == bed.MAIN_IP
    assert read(api, "service", f"{bed.APP}-preview")["spec"]["clusterIP"] == bed.PREVIEW_IP
    for pod in pods(api):
        (container,) = pod["status"]["containerStatuses"]
        assert container["containerID"].startswith("containerd://")
    assert progress[0].startswith(f"creating Deployment {bed.APP} at t-good (2 replicas)")
    assert progress[-1] == f"{bed.APP}: 2/2 pods ready on t-good"


def test_rolling_update_records_the_restore_point_with_the_new_image(target, images, api):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    progress = Lines()

    deploy(target, good2, good, progress)

    status = target.status()
    assert status.current == good2
    assert status.previous == good and status.stable == good
    assert status.unjudged()
    assert images_of(api) == [good2.image] * 2
    recorded = annotations(api)
    assert recorded["ferryman.io/previous.image"] == good.image
    assert recorded["ferryman.io/release.run"] == "test-run"
    assert json.loads(recorded["ferryman.io/template"])["spec"]["containers"][0]["image"] \
        == good2.image
    assert json.loads(recorded["ferryman.io/stable.template"])["spec"]["containers"][0][
        "image"] == good.image
    assert progress[0] == f"updating Deployment {bed.APP} to t-good2 (2 replicas)"
    assert progress[-1] == f"{bed.APP}: 2/2 pods ready on t-good2"


def test_marking_and_finishing_restart_no_pods(target, images, api):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    deploy(target, good2, good)
    before = sorted(p["metadata"]["uid"] for p in pods(api))
    template = read(api, "deployment")["spec"]["template"]

    target.unmark(good2)
    target.mark(MARK, good2)
    assert target.status().in_flight == MARK
    target.unmark(good2)

    status = target.status()
    assert status.stable == good2 and status.in_flight is None and not status.unjudged()
    # Annotations of the Deployment object, not of its pod template. (They do bump the
    # Deployment's generation: the controller copies them to its ReplicaSets.)
    assert read(api, "deployment")["spec"]["template"] == template
    time.sleep(3)  # had anything restarted, new pods would exist by now
    assert sorted(p["metadata"]["uid"] for p in pods(api)) == before


def test_restore_puts_back_the_recorded_template_all_at_once(target, images, api):
    """The whole pod template comes back (an environment edit made since goes), every pod
    replaced at once, and the Deployment gets its own update strategy back."""
    from kubernetes import client

    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    client.AppsV1Api(api).patch_namespaced_deployment(bed.APP, bed.NAMESPACE, [
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
         "value": {"name": "GREETING", "value": "edited"}}])
    deploy(target, good2, good)
    assert {"name": "GREETING", "value": "edited"} in read(api, "deployment")["spec"][
        "template"]["spec"]["containers"][0]["env"]
    surges = []
    watching = threading.Event()

    def note_strategy():  # what the rollout ran with, seen from another client
        while not watching.is_set():
            surges.append(read(api, "deployment")["spec"]["strategy"])
            time.sleep(0.2)

    threading.Thread(target=note_strategy, daemon=True).start()
    progress = Lines()
    try:
        target.restore(good, progress)
    finally:
        watching.set()

    status = target.status()
    assert status.current == good and status.running_replicas == 2
    assert images_of(api) == [good.image] * 2
    deployment = read(api, "deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GREETING", "value": "edited"} not in env
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1,
                                                               "maxUnavailable": 0}
    assert "ferryman.io/strategy" not in deployment["metadata"]["annotations"]
    assert {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%",
                                                       "maxUnavailable": 0}} in surges
    assert progress[0] == f"restoring Deployment {bed.APP} to t-good, all replicas at once"


def sick_manifests(deployment: dict) -> None:
    """Ready only while /metrics answers; a progress deadline of 10 s."""
    deployment_edit(deployment)
    deployment["spec"]["progressDeadlineSeconds"] = 10
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["path"] = "/metrics"


def test_a_passed_progress_deadline_fails_the_deploy_and_restore_brings_back_stable(
    make_target, images, api
):
    target = make_target(sick_manifests, deploy_timeout="120s")
    good, sick = images["good"], images["sick"]
    deploy(target, good, None)
    target.unmark(good)

    with pytest.raises(DeployFailed, match=r"t-sick did not roll out: demo-k8s exceeded its "
                                           r"progress deadline"):
        deploy(target, sick, good)
    assert target.status().restore_point() == good

    target.restore(good, Lines())

    assert images_of(api) == [good.image] * 2
    assert target.status().running_replicas == 2


def test_a_crash_looping_version_fails_the_deploy_naming_the_reason(target, images, api):
    good, crash = images["good"], images["crash"]
    deploy(target, good, None)
    target.unmark(good)

    with pytest.raises(DeployFailed, match=r"pod\(s\) of t-crash cannot start .*"
                                           r"CrashLoopBackOff"):
        deploy(target, crash, good)

    # maxUnavailable 0: the old pods kept serving the whole time.
    assert sum(1 for p in pods(api) if p["spec"]["containers"][0]["image"] == good.image) == 2
    target.restore(good, Lines())
    assert images_of(api) == [good.image] * 2


def test_watch_sees_the_first_new_ready_pod(target, images):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    target.mark(MARK, good)
    target.run(Role.STABLE, good2, 2, Lines(), wait=False)

    target.wait(Role.STABLE, good2, Lines(), ready=1)

    assert target.watch(Role.STABLE, good2).ready >= 1
    target.wait(Role.STABLE, good2, Lines())
    assert target.status().running_replicas == 2


# -- the API's answers ---------------------------------------------------------------------


def test_a_conflicting_concurrent_patch_is_read_again_and_retried(target, images, api):
    """Between the target's read and its patch someone else changes the Deployment: the
    API answers 409, and the target computes its patch again from a fresh read."""
    from kubernetes import client

    deploy(target, images["good"], None)
    reads = 0
    original = target.k8s.read

    def read_then_someone_patches(kind, name):
        nonlocal reads
        found = original(kind, name)
        if kind == "deployment" and name == bed.APP:
            reads += 1
            if reads == 2:  # finish's own read, inside _modify
                client.AppsV1Api(api).patch_namespaced_deployment(bed.APP, bed.NAMESPACE, [
                    {"op": "add", "path": "/metadata/annotations/someone~1else",
                     "value": "was here"}])
        return found

    target.k8s.read = read_then_someone_patches
    patches = []
    real_patch = target.k8s.apps.patch_namespaced_deployment

    def counting_patch(*args, **kwargs):
        try:
            return real_patch(*args, **kwargs)
        except client.ApiException as e:
            patches.append(e.status)
            raise
        finally:
            patches.append("sent")

    target.k8s.apps.patch_namespaced_deployment = counting_patch

    target.unmark(images["good"])

    # At least the one conflict we made (the controller writing the Deployment's status
    # after a change can make more); every conflict was followed by a try that went through.
    assert patches.count(409) >= 1 and patches.count("sent") == patches.count(409) + 1, \
        patches
    assert patches[-1] == "sent"
    recorded = annotations(api)
    assert recorded["someone/else"] == "was here"  # their change survived ours
    assert recorded["ferryman.io/stable.version"] == "t-good"  # and ours went through


def test_a_forbidden_verb_is_reported_at_once_naming_verb_and_resource(make_target):
    target = make_target(namespace="kube-system")

    with pytest.raises(TargetError) as caught:
        target.status()

    message = str(caught.value)
    assert message.startswith("Kubernetes forbids this identity to get services in namespace "
                              "kube-system")
    assert 'cannot get resource "services"' in message  # the API's own words


def test_a_manifest_the_role_does_not_cover_is_refused_naming_it(make_target, tmp_path, images):
    target = make_target()
    (target.manifests.folder / "config.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{bed.APP}-config"},
        "data": {"greeting": "hello"}}))
    target = KubernetesTarget(target.app, target.settings, poll_seconds=0.5)  # reads it again

    with pytest.raises(TargetError, match=r"forbids this identity to patch \(server-side "
                                          r"apply\) configmaps in namespace ferryman-demo"):
        deploy(target, images["good"], None)


# -- canary and preview Deployments, and the router ---------------------------------------


def test_canary_pods_get_their_share_behind_the_apps_service(target, images, api):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    router = KubernetesReplicasRouter(target)
    target.run(Role.CANARY, good2, 0, Lines())

    share = router.set_weight(33, Lines())

    assert share == pytest.approx(100 / 3)
    canary = read(api, "deployment", f"{bed.APP}-canary")
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"] == {"ferryman.io/app": bed.APP,
                                                         "ferryman.io/role": "canary"}
    # Behind the app's Service: its selector picks the canary's pod too.
    assert images_of(api) == sorted([good.image] * 2 + [good2.image])
    status = target.status()
    assert status.workload(Role.CANARY).ready == 1
    assert status.workload(Role.CANARY).on_app_address
    assert status.current == good and status.running_replicas == 2
    # And users get it: answers of both versions on the Service's address.
    answers = bed.Answers(bed.MAIN_IP).start()
    try:
        seen = bed.until(lambda: len(answers.seen) >= 60 and answers.versions(), timeout=60)
    finally:
        answers.stop()
    assert set(seen) == {"t-good", "t-good2"}, seen
    target.remove(Role.CANARY, Lines())
    assert target.status().workload(Role.CANARY) is None
    assert images_of(api) == [good.image] * 2


def test_blue_green_switch_and_switch_back_move_the_services_selector(target, images, api):
    good, good2 = images["good"], images["good2"]
    deploy(target, good, None)
    target.unmark(good)
    router = KubernetesReplicasRouter(target)
    own_selector = read(api, "service")["spec"]["selector"]

    target.run(Role.PREVIEW, good2, 2, Lines())
    router.prepare(Role.PREVIEW, Lines())

    preview = read(api, "service", f"{bed.APP}-preview")
    assert preview["spec"]["selector"] == {"ferryman.io/app": bed.APP,
                                           "ferryman.io/role": "preview"}
    assert not target.status().workload(Role.PREVIEW).on_app_address
    # kube-proxy programs the preview Service's new endpoints a moment after the pods are
    # ready: from its first answer on, only the preview answers there.
    assert bed.until(lambda: bed.ask(bed.PREVIEW_IP)[1] == 200, timeout=30)
    main, side = bed.Answers(bed.MAIN_IP).start(), bed.Answers(bed.PREVIEW_IP).start()
    try:
        started = time.monotonic()
        bed.until(lambda: len(main.since(started)) >= 20 and len(side.since(started)) >= 20)
        # Before the switch: the app's address never reaches the preview's pods.
        assert set(main.versions(started)) == {"t-good"}, main.versions(started)
        assert set(side.versions(started)) == {"t-good2"}, side.versions(started)

        router.switch(Role.PREVIEW, Lines())

        service = read(api, "service")
        assert service["spec"]["selector"] == preview["spec"]["selector"]
        assert json.loads(service["metadata"]["annotations"]["ferryman.io/selector"]) \
            == own_selector
        status = target.status()
        assert status.workload(Role.PREVIEW).on_app_address
        assert status.workload(Role.STABLE).desired == 2  # the old one stays at full size
        switched = time.monotonic()
        assert bed.until(lambda: main.versions(switched + 2).keys() == {"t-good2"}
                         and sum(main.versions(switched + 2).values()) >= 20, timeout=60), \
            main.versions(switched)

        router.switch(Role.STABLE, Lines())

        back = time.monotonic()
        assert read(api, "service")["spec"]["selector"] == own_selector
        assert bed.until(lambda: main.versions(back + 2).keys() == {"t-good"}
                         and sum(main.versions(back + 2).values()) >= 20, timeout=60), \
            main.versions(back)
    finally:
        main.stop()
        side.stop()
    router.clean_up(Role.PREVIEW, Lines())
    target.remove(Role.PREVIEW, Lines())
    assert target.status().workload(Role.PREVIEW) is None
    # The preview Service came from the manifests: it stays, reaching no pods now.
    assert read(api, "service", f"{bed.APP}-preview")["spec"]["clusterIP"] == bed.PREVIEW_IP
    assert images_of(api, "ferryman.io/role=preview") == []


def test_a_cluster_config_block_reaches_the_cluster_and_names_the_namespace(tmp_path):
    """prefect-kubernetes' KubernetesClusterConfig, saved on the stack's Prefect server:
    the kubeconfig a worker without the file gets; the namespace comes from its context."""
    from prefect_kubernetes.credentials import KubernetesClusterConfig

    name = "ferryman-test-demo-k8s"
    KubernetesClusterConfig.from_file(bed.kubeconfig()).save(name, overwrite=True)
    try:
        spec = write_spec(tmp_path)
        data = spec.model_dump(mode="json", exclude={"source"})
        data["target"].pop("kubeconfig")
        data["target"].pop("namespace")
        data["target"]["cluster_config_block"] = name
        spec = parse_spec(data, DEMO, "test")
        target = KubernetesTarget(spec.app, spec.target)

        assert target.namespace == bed.NAMESPACE
        assert target.status().exists is False
    finally:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.delete_block_document(client.read_block_document_by_name(
                name, block_type_slug="kubernetes-cluster-config").id)
