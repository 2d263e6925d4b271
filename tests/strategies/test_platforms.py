"""The strategy table on each platform, in-process, through the platforms' table: the real
KubernetesTarget and its replicas router over an in-memory Kubernetes API, and a toy platform
defined only in tests/ (one package, one registration).

Every case asserts how the release ended, what runs afterwards (read back with the target's
own `status`: only the judged version, on the stable workload at full size, unmarked) and the
largest share of the app's address the new version ever had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from flows.recovery import recover
from flows.rollback import roll_back
from tasks.platforms import get_router, get_target
from tasks.releases import Outcome
from tasks.spec import parse_spec
from tasks.strategies import Release, carry_out
from tasks.strategies.base import call_function
from tasks.targets import InFlight, Role, Target, Version
from tests.platforms.kubernetes.fake_api import FakeKubernetesApi
from tests.platforms.toy import ToyTargetSpec
from tests.strategies.fakes import FakeClock, FakeTarget, ScriptedPrometheus, always
from tests.strategies.test_strategies import CANARY, CASES, COUNT, NEW, OLD, Person

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"
PLATFORMS = ["kubernetes", "toy"]


@dataclass
class Bed:
    """One app on one platform, running OLD as its judged stable version."""

    spec: object
    target: Target
    max_share: Callable[[Version], float]


def spec_of(folder: str, strategy) -> object:
    data = yaml.safe_load((DEPLOYMENTS / folder / "release.yaml").read_text())
    data["strategy"] = strategy
    data["analysis"].update({"count": COUNT, "interval": 1, "initial_delay": 0})
    return parse_spec(data, DEPLOYMENTS / folder)


def kubernetes_bed(strategy, broken: set[str]) -> Bed:
    spec = spec_of("demo-k8s", strategy)
    api = FakeKubernetesApi(spec.target.namespace, spec.target.service, broken)
    target = get_target(spec, client=api)
    target.run(Role.STABLE, OLD, target.replicas, progress=print)  # applies the manifests
    target.unmark(OLD)
    return Bed(spec, target, lambda version: api.max_share(version.image))


def toy_bed(strategy, broken: set[str]) -> Bed:
    spec = spec_of("demo", strategy).model_copy(update={"target": ToyTargetSpec()})
    state = FakeTarget.running(OLD)
    state.broken |= {v.version for v in (OLD, NEW) if v.image in broken}
    return Bed(spec, get_target(spec, client=state), state.max_share)


BEDS = {"kubernetes": kubernetes_bed, "toy": toy_bed}


def release(platform: str, strategy, script=None, broken: set[str] = frozenset()):
    bed = BEDS[platform](strategy, set(broken))
    clock = FakeClock()
    r = Release(
        spec=bed.spec, target=bed.target, router=get_router(bed.spec, bed.target), new=NEW,
        stable=OLD, person=Person(), step=call_function,
        provider=ScriptedPrometheus({NEW.version: script} if script else None),
        clock=clock.clock(),
    )
    ending = carry_out(r, InFlight("run-1", NEW.version, "2026-12-02T00:00:00+00:00"))
    return ending, bed


def assert_only(target: Target, version: Version) -> None:
    """Read back from the platform: only `version` runs, on the stable workload at full
    size and on the app's address, the mark gone and `version` recorded where it belongs."""
    status = target.status()
    assert [w.role for w in status.workloads] == [Role.STABLE], status.workloads
    main = status.workloads[0]
    assert (main.version, main.desired, main.ready, main.on_app_address) == (
        version, target.replicas, target.replicas, True)
    assert status.in_flight is None
    assert status.stable == version


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(("strategy", "script", "outcome", "exposure"), CASES)
def test_strategy_ends_judged_on_each_platform(platform, strategy, script, outcome, exposure):
    ending, bed = release(platform, strategy, script)
    assert ending.outcome is outcome, ending.reason
    assert_only(bed.target, NEW if outcome is Outcome.PROMOTED else OLD)
    assert bed.max_share(NEW) == pytest.approx(exposure, abs=0.1)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("strategy", ["rolling", "blue-green", CANARY])
def test_a_version_that_cannot_start_is_rolled_back_on_each_platform(platform, strategy):
    ending, bed = release(platform, strategy, broken={NEW.image})
    assert ending.outcome is Outcome.ROLLED_BACK, ending.reason
    assert ending.reason.startswith("deploy failed:"), ending.reason
    assert_only(bed.target, OLD)


def test_the_kubernetes_switch_is_one_patch_of_the_apps_service():
    _, bed = release("kubernetes", {"kind": "blue-green", "scale_down_delay": "30s"})
    api = bed.target.k8s
    assert api.calls.count("patch service demo-k8s") == 2  # to the preview, and back
    assert api.max_share(OLD.image) == 100 and api.max_share(NEW.image) == 100


def died_mid_canary(platform: str) -> Bed:
    """What a release whose process died at its first canary step left: the mark on the
    stable workload and a canary of NEW serving beside it."""
    bed = BEDS[platform](CANARY, set())
    bed.target.mark(InFlight("run-1", NEW.version, "2026-12-02T00:00:00+00:00"), OLD)
    bed.target.run(Role.CANARY, NEW, 1, progress=print)
    status = bed.target.status()
    assert status.unjudged() and status.workload(Role.CANARY).version == NEW
    return bed


@pytest.mark.parametrize("platform", PLATFORMS)
def test_recover_restores_and_verifies_what_a_dead_release_left(platform):
    bed = died_mid_canary(platform)
    ending = recover(bed.spec, bed.target, "test", step=call_function,
                     provider=ScriptedPrometheus(), clock=FakeClock().clock())
    assert ending.outcome is Outcome.ROLLED_BACK, ending.reason
    assert "1.0.0 restored and verified" in ending.reason
    assert_only(bed.target, OLD)
    assert recover(bed.spec, bed.target, "test", step=call_function) is None  # judged now


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rollback_restores_verifies_and_promotes_the_earlier_version(platform):
    ending, bed = release(platform, "rolling")
    assert ending.outcome is Outcome.PROMOTED
    result = roll_back(bed.spec, bed.target, call_function, provider=ScriptedPrometheus(),
                       clock=FakeClock().clock())
    assert (result.outcome, result.version, result.previous_version) == (
        Outcome.ROLLED_BACK, OLD.version, NEW.version), result.reason
    assert_only(bed.target, OLD)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rollback_that_does_not_verify_fails_and_promotes_nothing(platform):
    _, bed = release(platform, "rolling")
    result = roll_back(bed.spec, bed.target, call_function,
                       provider=ScriptedPrometheus({OLD.version: always(0.5)}),
                       clock=FakeClock().clock())
    assert result.outcome is Outcome.FAILED and "did not verify" in result.reason
    assert bed.target.status().stable == NEW  # the earlier version was not promoted
