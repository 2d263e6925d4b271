"""Whole releases of demo-k8s on the real Kubernetes test bed, through `ferryman release`.

The spec is deployments/demo-k8s/release.yaml itself, with the test bed's kubeconfig and a
shorter analysis (and the strategy under test). The analysis really measures: the stack's
Prometheus scrapes the pods it discovers through the API server, and the measurements are
read back from the `--json` record. Users' requests come from this module: a thread per
Service address (the app's and the preview's pinned ClusterIPs), each request on a new
connection, noting which version answered; that is what "users saw" below.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests import kubernetes_bed as bed
from tests.helpers import ROOT, assert_share_within, ferryman, record_of, release

pytestmark = [pytest.mark.kubernetes, pytest.mark.stack]

SPEC = ROOT / "deployments" / "demo-k8s" / "release.yaml"
RUN = f"k{int(time.time()) % 1_000_000}"


@pytest.fixture(scope="module", autouse=True)
def _test_bed_is_up() -> None:
    bed.require_up()


@pytest.fixture(scope="module")
def users():
    """Requests to the app's address and to its preview address for the whole module."""
    main, preview = bed.Answers(bed.MAIN_IP).start(), bed.Answers(bed.PREVIEW_IP).start()
    yield main, preview
    main.stop()
    preview.stop()


@pytest.fixture(autouse=True)
def _note_unanswered(request, users):
    """How many requests to the app's address got no answer during each test (printed)."""
    main, _ = users
    started = time.monotonic()
    yield
    answers = main.since(started)
    failed = sum(1 for version, _ in answers if not version)
    print(f"\n{request.node.name}: {failed} of {len(answers)} requests to the app's address "
          "unanswered")


@pytest.fixture(scope="module")
def api():
    return bed.api_client()


def spec_copy(tmp_path: Path, strategy: object = "rolling", **analysis) -> str:
    """The demo-k8s spec with the test bed's kubeconfig, `strategy` and a quick analysis."""
    data = yaml.safe_load(SPEC.read_text())
    data["image"]["context"] = str(ROOT / "examples" / "demo-app")
    data["target"].update({"kubeconfig": str(bed.kubeconfig()),
                           "manifests": str(SPEC.parent / "k8s")})
    data["strategy"] = strategy
    data["analysis"].update({"count": 3, "interval": "3s", "initial_delay": "10s",
                             **analysis})
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def running(api) -> dict:
    """What the namespace runs of demo-k8s: Deployments and their pods' versions."""
    from kubernetes import client

    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    deployments = []
    for name in bed.NAMES["deployments"]:  # by name: the Role grants get, not list
        try:
            deployments.append(apps.read_namespaced_deployment(name, bed.NAMESPACE))
        except client.ApiException as e:
            assert e.status == 404, e
    pods = [p for p in core.list_namespaced_pod(bed.NAMESPACE).items
            if p.metadata.name.startswith(f"{bed.APP}-") and not p.metadata.deletion_timestamp]
    return {"deployments": sorted(d.metadata.name for d in deployments), "images": sorted(
        p.spec.containers[0].image for p in pods)}


def status(spec: str) -> dict:
    done = ferryman("status", spec, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_only_stable_serving(api, spec: str, version: str) -> None:
    """Ferryman's reading and the cluster's agree: `version` stable and running on both pods
    (their images, by digest, are the stable Deployment's), and no other Deployment."""
    assert version, "no version to compare with"
    now = status(spec)
    assert (now["running"], now["stable"]) == (version, version), now
    assert now["replicas"] == "2/2", now
    assert now["running_image"] and "@sha256:" in now["running_image"], now
    assert running(api) == {"deployments": [bed.APP], "images": [now["running_image"]] * 2}


def measured(record: dict, step: str) -> list[dict]:
    """The measurements of one analysis of the release (the restored version's included)."""
    return [m for m in record["measurements"] + record.get("rollback_measurements", [])
            if m["step"] == step]


def assert_really_measured(record: dict, step: str, version: str) -> None:
    """Every metric of `step` measured `version` with a value, not only 'no data'."""
    taken = measured(record, step)
    assert taken, record["measurements"]
    assert {m["version"] for m in taken} == {version}
    for metric in ("error-rate", "latency-p95"):
        values = [m["value"] for m in taken if m["metric"] == metric]
        assert any(v is not None for v in values), (metric, taken)


def test_a_release_of_an_app_that_does_not_exist_yet_creates_it(tmp_path, api, users):
    bed.clear(api)
    spec = spec_copy(tmp_path, {"kind": "canary"})  # a first install deploys directly
    version = f"4.0.0-{RUN}"

    code, record = release(version, spec=spec)

    assert (code, record["outcome"]) == (0, "promoted"), record["reason"]
    assert any("first install" in note for note in record["notes"]), record["notes"]
    assert_really_measured(record, "rolling", version)
    assert_only_stable_serving(api, spec, version)


@pytest.fixture(scope="module")
def stable(tmp_path_factory, api, users) -> str:
    """A good version, promoted: what every failed release below must restore."""
    version = f"4.1.0-{RUN}"
    code, record = release(version, spec=spec_copy(tmp_path_factory.mktemp("stable")))
    assert code == 0, record["reason"]
    return version


def test_rolling_is_promoted_after_measuring_the_new_pods(tmp_path, api, stable):
    spec = spec_copy(tmp_path)
    version = f"4.2.0-{RUN}"
    code, record = release(version, spec=spec)
    assert (code, record["outcome"]) == (0, "promoted"), record["reason"]
    assert_really_measured(record, "rolling", version)
    assert all(m["phase"] == "successful" for m in measured(record, "rolling"))
    assert_only_stable_serving(api, spec, version)


def test_rolling_bad_version_is_rolled_back_on_its_error_rate(tmp_path, api, users, stable):
    spec = spec_copy(tmp_path)
    current = status(spec)["stable"]
    bad = f"4.3.0-{RUN}-bad"
    code, record = release(bad, "FAIL_RATE=0.5", spec=spec)
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert "error-rate" in record["reason"] and f"{current} restored and verified" in \
        record["reason"]
    failed = [m for m in measured(record, "rolling") if m["phase"] == "failed"]
    assert failed and all(m["value"] > 0.05 for m in failed), measured(record, "rolling")
    assert_really_measured(record, "restored", current)
    assert_only_stable_serving(api, spec, current)


def test_blue_green_is_promoted_and_leaves_no_preview(tmp_path, api, users, stable):
    main, preview = users
    spec = spec_copy(tmp_path, {"kind": "blue-green", "scale_down_delay": "5s"})
    version = f"4.4.0-{RUN}"
    started = time.monotonic()
    code, record = release(version, spec=spec)
    assert (code, record["outcome"]) == (0, "promoted"), record["reason"]
    assert {m["step"] for m in record["measurements"]} == {"preview", "switched"}
    assert_really_measured(record, "preview", version)
    assert preview.versions(started).get(version, 0) > 0  # the preview address was driven
    assert_only_stable_serving(api, spec, version)
    last = main.versions(time.monotonic() - 2)
    assert last.keys() == {version}, last  # answered, and only by the new version


def test_blue_green_bad_version_never_answers_on_the_apps_address(tmp_path, api, users,
                                                                  stable):
    main, preview = users
    spec = spec_copy(tmp_path, {"kind": "blue-green"})
    current = status(spec)["stable"]
    bad = f"4.5.0-{RUN}-bad"
    started = time.monotonic()
    code, record = release(bad, "FAIL_RATE=0.5", spec=spec)
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert record["reason"].startswith("before the switch (no user got it): error-rate")
    assert main.versions(started).get(bad, 0) == 0, main.versions(started)
    assert preview.versions(started).get(bad, 0) > 0, preview.versions(started)
    assert_only_stable_serving(api, spec, current)


def test_blue_green_switches_back_after_a_failed_post_switch_analysis(tmp_path, api, users,
                                                                      stable):
    main, _ = users
    spec = spec_copy(tmp_path, {"kind": "blue-green", "preview_analysis": False})
    current = status(spec)["stable"]
    bad = f"4.6.0-{RUN}-bad"
    started = time.monotonic()
    code, record = release(bad, "FAIL_RATE=0.5", spec=spec)
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert record["reason"].startswith("after the switch: error-rate")
    assert main.versions(started).get(bad, 0) > 0  # it did serve users, after the switch
    ended = time.monotonic()
    time.sleep(3)
    assert main.versions(ended).keys() == {current}, main.versions(ended)
    assert_only_stable_serving(api, spec, current)


CANARY = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}}, {"weight": 50},
                                      {"analysis": {}}]}


def test_canary_is_promoted_through_two_steps(tmp_path, api, users, stable):
    spec = spec_copy(tmp_path, CANARY)
    version = f"4.7.0-{RUN}"
    code, record = release(version, spec=spec)
    assert (code, record["outcome"]) == (0, "promoted"), record["reason"]
    assert {m["step"] for m in record["measurements"]} == {"canary-33", "canary-50"}
    assert_really_measured(record, "canary-33", version)
    assert record["notes"] == ["step 1: canary at 33% (asked 33%)",
                               "step 3: canary at 50% (asked 50%)"]
    assert_only_stable_serving(api, spec, version)


def test_canary_bad_version_is_rolled_back_at_the_first_step_within_its_share(
    tmp_path, api, users, stable
):
    main, _ = users
    spec = spec_copy(tmp_path, CANARY)
    current = status(spec)["stable"]
    bad = f"4.8.0-{RUN}-bad"
    started = time.monotonic()
    code, record = release(bad, "FAIL_RATE=0.5", spec=spec)
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert record["reason"].startswith("step 2 (canary at 33%)"), record["reason"]
    # Of the app's answers while the canary served (from its first to its last), its share: no
    # more than a 33% share allows.
    seen = [(t, v) for t, v, _ in main.timeline(started)]
    times = [t for t, v in seen if v == bad]
    assert times, "the canary never answered on the app's address"
    window = [v for t, v in seen if times[0] <= t <= times[-1]]
    assert_share_within(window.count(bad), len(window), 33)
    assert_only_stable_serving(api, spec, current)


def test_a_version_that_crashes_on_start_is_rolled_back(tmp_path, api, users, stable):
    spec = spec_copy(tmp_path)
    current = status(spec)["stable"]
    code, record = release(f"4.9.0-{RUN}-crash", "CRASH_ON_START=1", spec=spec)
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert "CrashLoopBackOff" in record["reason"], record["reason"]
    assert_only_stable_serving(api, spec, current)


def test_status_reads_the_restore_point_from_the_deployment(tmp_path, stable):
    spec = spec_copy(tmp_path)
    done = ferryman("status", spec, "--json")
    assert done.returncode == 0, done.stderr
    now = record_of(done.stdout, done.stderr)
    assert now["stable"] == now["running"]
