"""The `kubernetes` target kind: spec validation, its manifests, and what the target writes,
without a cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tasks.errors import SpecError, TargetConflictError, TargetError, TargetUnavailableError
from tasks.platforms.kubernetes.api import api_error
from tasks.platforms.kubernetes.spec import KubernetesTargetSpec
from tasks.platforms.kubernetes.target import (
    PREFIX,
    KubernetesTarget,
    role_selector,
    selects,
    template_for,
)
from tasks.spec import check_target, load_spec, parse_spec
from tasks.targets import InFlight, Role, Version, records
from tests.helpers import changed

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "deployments" / "demo-k8s"


def demo_data() -> dict:
    return yaml.safe_load((DEMO / "release.yaml").read_text())


def error_of(data: dict, base: Path = DEMO) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(data, base, "test.yaml")
    return str(caught.value)


def test_the_demo_spec_is_a_kubernetes_target_with_names_and_replicas():
    spec = load_spec(DEMO / "release.yaml")
    target = spec.target
    assert isinstance(target, KubernetesTargetSpec)
    assert (target.deployment, target.service, target.container) == ("demo-k8s",) * 2 + ("app",)
    assert target.namespace == "ferryman-demo"
    assert target.manifests == DEMO / "k8s"
    # The kubeconfig is a credential a worker may get only at run time: resolved, not read.
    assert target.kubeconfig == (ROOT / ".state" / "kubernetes" / "ferryman.kubeconfig")


def test_deployment_and_service_default_to_the_apps_name():
    data = demo_data()
    for key in ("deployment", "service", "container", "manifests"):
        del data["target"][key]
    spec = parse_spec(data, DEMO)
    assert (spec.target.deployment, spec.target.service) == ("demo-k8s", "demo-k8s")
    data["target"]["deployment"] = "web"
    assert parse_spec(data, DEMO).target.service == "web"


@pytest.mark.parametrize("path, value, message", [
    ("target.namespace", "Not_A_Name", "target.namespace: String should match pattern"),
    ("target.port", 0, "target.port: Input should be greater than or equal to 1"),
    ("target.manifests", "missing", "target.manifests: Value error, manifests folder"),
    ("target.deploy_timeout", "0s", "target.deploy_timeout: Input should be greater than 0"),
    ("target.surprise", 1, "target.surprise: Extra inputs are not permitted"),
    ("target.in_cluster", True,
     "target: give one way to reach the cluster, not kubeconfig and in_cluster"),
    ("target.kind", "nomad", "target.kind: 'nomad' is not one of 'swarm', 'kubernetes'"),
])
def test_invalid_kubernetes_target_names_the_field(path, value, message):
    assert message.replace("Value error, ", "") in error_of(changed(demo_data(), path, value))


def copy_demo(tmp_path: Path, edit=None) -> Path:
    """The demo spec and manifests in tmp_path, the Deployment changed by `edit`."""
    shutil.copytree(DEMO / "k8s", tmp_path / "k8s")
    shutil.copy(DEMO / "release.yaml", tmp_path / "release.yaml")
    data = demo_data()
    data["image"]["context"] = str(ROOT / "examples" / "demo-app")
    (tmp_path / "release.yaml").write_text(yaml.safe_dump(data))
    if edit is not None:
        file = tmp_path / "k8s" / "deployment.yaml"
        deployment = yaml.safe_load(file.read_text())
        edit(deployment)
        file.write_text(yaml.safe_dump(deployment))
    return tmp_path / "release.yaml"


def test_a_canary_weight_is_checked_against_the_manifests_replicas(tmp_path):
    spec_file = copy_demo(tmp_path, lambda d: d["spec"].update(replicas=1))
    data = yaml.safe_load(spec_file.read_text())
    data["strategy"] = {"kind": "canary", "steps": [{"weight": 10}, {"analysis": {}}]}
    message = error_of(data, tmp_path)
    assert "strategy.steps: weight 10% cannot be set by replica counts beside 1" in message


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["metadata"].update(name="other"),
     "target.manifests: no Deployment 'demo-k8s' in"),
    (lambda d: d["spec"].update(replicas=0), "spec.replicas: want a count of at least 1"),
    (lambda d: d["metadata"].update(namespace="elsewhere"),
     "metadata.namespace 'elsewhere' is not the target's namespace 'ferryman-demo'"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(name="web"),
     "spec.template: no container 'app' (containers: ['web'])"),
])
def test_manifests_that_cannot_be_applied_fail_when_the_spec_is_loaded(tmp_path, edit, message):
    spec_file = copy_demo(tmp_path, edit)
    with pytest.raises(SpecError, match="invalid release spec") as caught:
        load_spec(spec_file)
    assert message in str(caught.value)


def test_a_manifest_that_is_not_an_object_is_named_by_file_and_document(tmp_path):
    spec_file = copy_demo(tmp_path)
    (tmp_path / "k8s" / "extra.yaml").write_text("---\n# empty\n---\n- a list\n")
    with pytest.raises(SpecError) as caught:
        load_spec(spec_file)
    assert "target.manifests: extra.yaml: document 1: not a Kubernetes object" in str(
        caught.value)


def test_without_manifests_the_weights_wait_for_the_cluster(tmp_path):
    data = changed(demo_data(), "target.manifests", KeyError)
    data["strategy"] = {"kind": "canary", "steps": [{"weight": 10}, {"analysis": {}}]}
    check_target(parse_spec(data, DEMO))  # no size to check against: no error


# -- what the target writes ----------------------------------------------------------------

STABLE_TEMPLATE = {
    "metadata": {"labels": {"app": "demo-k8s", "tier": "web"},
                 "annotations": {"prometheus.io/scrape": "true"}},
    "spec": {"containers": [{"name": "sidecar", "image": "proxy:1"},
                            {"name": "app", "image": "demo@sha256:old",
                             "env": [{"name": "APP", "value": "demo-k8s"}]}]},
}
SERVICE_SELECTOR = {"app": "demo-k8s"}


def test_a_canary_is_out_of_the_services_reach_until_the_router_sizes_it():
    template = template_for(Role.CANARY, STABLE_TEMPLATE, SERVICE_SELECTOR, "demo-k8s",
                            "demo@sha256:new", 1)
    labels = template["metadata"]["labels"]
    assert labels == {"tier": "web", "ferryman.io/app": "demo-k8s",
                      "ferryman.io/role": "canary"}
    assert not selects(SERVICE_SELECTOR, labels)
    assert [c["image"] for c in template["spec"]["containers"]] == ["proxy:1",
                                                                   "demo@sha256:new"]
    assert STABLE_TEMPLATE["spec"]["containers"][1]["image"] == "demo@sha256:old"  # a copy


def test_a_preview_is_out_of_the_services_reach_until_the_switch():
    template = template_for(Role.PREVIEW, STABLE_TEMPLATE, SERVICE_SELECTOR, "demo-k8s",
                            "demo@sha256:new", 1)
    labels = template["metadata"]["labels"]
    assert not selects(SERVICE_SELECTOR, labels)
    assert selects(role_selector("demo-k8s", Role.PREVIEW), labels)
    assert labels["tier"] == "web"
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}


def test_an_empty_selector_selects_nothing():
    assert not selects({}, {"app": "demo-k8s"})


def api_exception(status: int, message: str = "the API's own words") -> k8s.ApiException:
    error = k8s.ApiException(status=status, reason="Reason")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


@pytest.mark.parametrize("status, kind", [
    (409, TargetConflictError), (500, TargetUnavailableError), (503, TargetUnavailableError),
    (429, TargetUnavailableError), (422, TargetError), (400, TargetError), (401, TargetError),
])
def test_api_errors_are_transient_or_not_by_status(status, kind):
    error = api_error(api_exception(status), "update Deployment demo-k8s", "patch",
                      "deployments", "ferryman-demo")
    assert type(error) is kind
    assert "the API's own words" in str(error)


def test_a_forbidden_verb_names_the_verb_the_resource_and_the_namespace():
    error = api_error(api_exception(403, 'deployments.apps "x" is forbidden'),
                      "delete Deployment demo-k8s-canary", "delete", "deployments", "prod")
    assert type(error) is TargetError
    assert str(error).startswith("Kubernetes forbids this identity to delete deployments in "
                                 "namespace prod (needed to delete Deployment "
                                 "demo-k8s-canary; grant the verb in its Role): ")
    assert str(error).endswith('deployments.apps "x" is forbidden')


def offline_target() -> KubernetesTarget:
    """The demo's target with a client that is never used (no cluster is contacted)."""
    spec = load_spec(DEMO / "release.yaml")
    return KubernetesTarget(spec.app, spec.target, client=k8s.ApiClient())


def test_a_rolling_update_patches_the_image_and_the_restore_point_in_one_request():
    target = offline_target()
    deployment = {
        "metadata": {"annotations": {
            **records.version_entries(PREFIX, "", Version("1.0", "demo@sha256:old")),
            **records.version_entries(PREFIX, "stable.", Version("1.0", "demo@sha256:old")),
            **records.mark_entries(PREFIX, InFlight("run-1", "1.1", "2026-11-27T00:00:00Z")),
        }},
        "spec": {"replicas": 2, "template": STABLE_TEMPLATE},
    }
    operations = target._update(deployment, Version("1.1", "demo@sha256:new"), 2)
    by_path = {op["path"]: op["value"] for op in operations}
    assert by_path["/spec/template/spec/containers/1/image"] == "demo@sha256:new"
    annotations = by_path["/metadata/annotations"]
    assert records.version_of(annotations, PREFIX, "") == Version("1.1", "demo@sha256:new")
    assert records.version_of(annotations, PREFIX, "stable.") == Version("1.0",
                                                                         "demo@sha256:old")
    assert records.mark_of(annotations, PREFIX) == InFlight("run-1", "1.1",
                                                            "2026-11-27T00:00:00Z")
    recorded = json.loads(annotations["ferryman.io/template"])
    assert recorded["spec"]["containers"][1]["image"] == "demo@sha256:new"
    assert recorded["metadata"] == STABLE_TEMPLATE["metadata"]


def test_records_read_back_what_they_wrote_and_the_mark_comes_off_alone():
    mark = InFlight("run-2", "2.0", "2026-11-27T01:00:00Z")
    entries = {**records.version_entries(PREFIX, "previous.", Version("1.9", "img@sha256:a")),
               **records.mark_entries(PREFIX, mark), "other/key": "kept"}
    assert entries["ferryman.io/release.run"] == "run-2"
    assert entries["ferryman.io/previous.version"] == "1.9"
    assert records.mark_of(entries, PREFIX) == mark
    assert records.without_mark(entries, PREFIX) == {
        "ferryman.io/previous.version": "1.9", "ferryman.io/previous.image": "img@sha256:a",
        "other/key": "kept"}
    assert records.version_of({}, PREFIX, "stable.") is None
    assert records.tag_of("127.0.0.1:5000/ferryman/demo-k8s:1.2@sha256:ab") == "1.2"
    assert records.tag_of("demo@sha256:ab") == "unknown"
