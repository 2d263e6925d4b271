"""What each platform's real target and router do under the strategies, in-process over the
in-memory APIs of tests/platforms/*/fake_api.py (the strategy table itself runs on every
platform in test_strategies.py): a version that cannot start, the Kubernetes switch, and the
two ways back outside a release, `recover` and `rollback`."""

from __future__ import annotations

import pytest

from flows.recovery import recover
from flows.rollback import rollback_app
from tasks.releases import Outcome
from tasks.strategies.base import call_function
from tasks.targets import InFlight, Role
from tests.strategies.beds import BEDS, NEW, OLD, PLATFORMS, Bed, assert_only, kubernetes_bed
from tests.strategies.fakes import FakeClock, ScriptedPrometheus, always
from tests.strategies.test_strategies import CANARY, release


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("strategy", ["rolling", "blue-green", CANARY])
def test_a_version_that_cannot_start_is_rolled_back(platform, strategy):
    ending, bed, _ = release(strategy, bed=BEDS[platform](strategy, broken={NEW.image}))
    assert ending.outcome is Outcome.ROLLED_BACK, ending.reason
    assert ending.reason.startswith("deploy failed:"), ending.reason
    assert_only(bed.target, OLD)


def test_the_kubernetes_switch_is_one_patch_of_the_apps_service_each_way():
    strategy = {"kind": "blue-green", "scale_down_delay": "30s"}
    _, bed, _ = release(strategy, bed=kubernetes_bed(strategy))
    api = bed.target.k8s
    assert api.calls.count("patch service demo-k8s") == 2  # to the preview, and back
    assert api.max_share(OLD.image) == 100 and api.max_share(NEW.image) == 100


def died_mid_canary(platform: str) -> Bed:
    """What a release whose process died at its first canary step left: the mark on the
    stable workload and a canary of NEW serving beside it."""
    bed = BEDS[platform](CANARY)
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
    ending, bed, _ = release("rolling", bed=BEDS[platform]("rolling"))
    assert ending.outcome is Outcome.PROMOTED
    result = rollback_app(bed.spec, bed.target, call_function, provider=ScriptedPrometheus(),
                       clock=FakeClock().clock())
    assert (result.outcome, result.version, result.previous_version) == (
        Outcome.ROLLED_BACK, OLD.version, NEW.version), result.reason
    assert_only(bed.target, OLD)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rollback_that_does_not_verify_fails_and_promotes_nothing(platform):
    _, bed, _ = release("rolling", bed=BEDS[platform]("rolling"))
    result = rollback_app(bed.spec, bed.target, call_function,
                       provider=ScriptedPrometheus({OLD.version: always(0.5)}),
                       clock=FakeClock().clock())
    assert result.outcome is Outcome.FAILED and "did not verify" in result.reason
    assert bed.target.status().stable == NEW  # the earlier version was not promoted


def test_a_preview_service_the_router_made_goes_with_the_preview():
    strategy = {"kind": "blue-green", "scale_down_delay": "30s"}
    bed = kubernetes_bed(strategy)
    api = bed.target.k8s
    api.delete("service", "demo-k8s-preview")  # an app whose manifests have none
    ending, bed, _ = release(strategy, bed=bed)
    assert ending.outcome is Outcome.PROMOTED, ending.reason
    assert "apply service demo-k8s-preview" in api.calls
    assert "delete service demo-k8s-preview" in api.calls
    assert api.read("service", "demo-k8s-preview") is None
    assert_only(bed.target, NEW)
