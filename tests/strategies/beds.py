"""An app on each platform for the in-process strategy tests: the real SwarmTarget and
KubernetesTarget with their routers from the platforms' table, over in-memory APIs of the
platforms (tests/platforms/*/fake_api.py), and the toy platform of tests/platforms/toy/.

Each bed runs OLD as the app's judged stable version (or nothing, for a first install), and
says the largest share of the app's address a version ever had."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.platforms import get_target
from tasks.spec import ReleaseSpec, parse_spec
from tasks.targets import Role, Target, Version
from tests.platforms.kubernetes.fake_api import FakeKubernetesApi
from tests.platforms.swarm.fake_api import FakeSwarmApi
from tests.platforms.toy import ToyTargetSpec
from tests.platforms.toy.workloads import ToyTarget

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"
OLD = Version("1.0.0", "registry/demo:1.0.0@sha256:" + "a" * 64)
NEW = Version("2.0.0", "registry/demo:2.0.0@sha256:" + "b" * 64)
COUNT = 3
"""Measurements per metric in every analysis of these tests."""


@dataclass
class Bed:
    spec: ReleaseSpec
    target: Target
    max_share: Callable[[Version], float]


def spec_of(folder: str, strategy, **analysis) -> ReleaseSpec:
    data = yaml.safe_load((DEPLOYMENTS / folder / "release.yaml").read_text())
    data["strategy"] = strategy
    data["analysis"].update({"count": COUNT, "interval": 1, "initial_delay": 0, **analysis})
    return parse_spec(data, DEPLOYMENTS / folder)


def _seed(target: Target, installed: bool) -> None:
    if installed:
        target.run(Role.STABLE, OLD, target.replicas, progress=print)
        target.unmark(OLD)


def swarm_bed(strategy, broken=frozenset(), installed=True, **analysis) -> Bed:
    spec = spec_of("demo", strategy, **analysis)
    api = FakeSwarmApi(spec.target.service, set(broken))
    target = get_target(spec, client=api)
    _seed(target, installed)
    return Bed(spec, target, lambda version: api.max_share(version.image))


def kubernetes_bed(strategy, broken=frozenset(), installed=True, **analysis) -> Bed:
    spec = spec_of("demo-k8s", strategy, **analysis)
    api = FakeKubernetesApi(spec.target.namespace, spec.target.service, set(broken))
    target = get_target(spec, client=api)
    _seed(target, installed)  # the first `run` applies the manifests
    return Bed(spec, target, lambda version: api.max_share(version.image))


def toy_bed(strategy, broken=frozenset(), installed=True, **analysis) -> Bed:
    spec = spec_of("demo", strategy, **analysis).model_copy(
        update={"target": ToyTargetSpec()})
    state = ToyTarget.running(OLD) if installed else ToyTarget()
    state.broken |= {v.version for v in (OLD, NEW) if v.image in broken}
    return Bed(spec, get_target(spec, client=state), state.max_share)


BEDS = {"swarm": swarm_bed, "kubernetes": kubernetes_bed, "toy": toy_bed}
PLATFORMS = list(BEDS)


def assert_only(target: Target, version: Version) -> None:
    """Read back from the platform: only `version` runs, on the stable workload at full
    size and on the app's address, the mark gone and `version` recorded as stable."""
    status = target.status()
    assert [w.role for w in status.workloads] == [Role.STABLE], status.workloads
    main = status.workloads[0]
    assert (main.version, main.desired, main.ready, main.on_app_address) == (
        version, target.replicas, target.replicas, True)
    assert status.in_flight is None
    assert status.stable == version
