"""Every branch of every strategy, in-process over a fake platform, router and Prometheus.

One row per case: the strategy, what the new version does, how the release ends, and the
most of the app's traffic the new version ever had. After every case the app must serve
its stable version alone, at full size, unless the new one was promoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tasks.analysis.decision import Decision, Verdict
from tasks.releases import Outcome
from tasks.spec import Approval, parse_spec
from tasks.strategies import Release, carry_out
from tasks.strategies.base import Answer, call_function, decision_of
from tasks.targets import InFlight, Role, Version
from tests.strategies.fakes import (
    DOWN,
    FakeClock,
    FakeRouter,
    FakeTarget,
    ScriptedPrometheus,
    after,
    always,
)

DEMO = Path(__file__).resolve().parents[2] / "deployments" / "demo"
OLD = Version("1.0.0", "registry/demo:1.0.0@sha256:" + "a" * 64)
NEW = Version("2.0.0", "registry/demo:2.0.0@sha256:" + "b" * 64)
COUNT = 3
PER_ROUND = 2  # the demo spec has two metrics
CANARY = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}}, {"weight": 50},
                                      {"analysis": {}}]}
BLUE_GREEN = {"kind": "blue-green", "scale_down_delay": "30s"}


def spec_with(strategy, **analysis):
    data = yaml.safe_load((DEMO / "release.yaml").read_text())
    data["strategy"] = strategy
    data["analysis"].update({"count": COUNT, "interval": 1, "initial_delay": 0, **analysis})
    return parse_spec(data, DEMO)


@dataclass
class Person:
    """Answers every question the same way (None: never answers) and keeps the questions."""

    answer: Answer | None = None
    asked: list[str] = field(default_factory=list)

    def __call__(self, question: str, approval: Approval) -> Decision:
        self.asked.append(question)
        return decision_of(question, self.answer, approval)


def release(strategy, script=None, person=None, target=None, abort_after=None, **analysis):
    target = target or FakeTarget.running(OLD)
    clock = FakeClock()
    prometheus = ScriptedPrometheus(script)

    def aborted() -> str | None:
        if abort_after is not None and clock.t >= abort_after:
            return "ops@example with ferryman abort"
        return None

    r = Release(
        spec=spec_with(strategy, **analysis), target=target, router=FakeRouter(target),
        new=NEW, stable=target.stable, person=person or Person(), interrupted=aborted,
        step=call_function, provider=prometheus, clock=clock.clock(),
    )
    ending = carry_out(r, InFlight("run-1", NEW.version, "2026-11-27T00:00:00+00:00"))
    return ending, target, r


def assert_only(target: FakeTarget, version: Version) -> None:
    """Only `version` serves, on the stable workload at full size, and the mark is gone."""
    assert set(target.workloads) == {Role.STABLE}, target.calls
    stable = target.workloads[Role.STABLE]
    assert (stable.version, stable.replicas, stable.on_app_address) == (
        version, target.replicas, True)
    assert target.in_flight is None


FAIL = 0.5  # an error rate above the demo's max 0.05
ONE_STEP = COUNT * PER_ROUND  # the good answers of one analysis

CASES = [
    # strategy, script of the new version, outcome, most of the app's traffic it had
    ("rolling", None, Outcome.PROMOTED, 100),
    ("blue-green", None, Outcome.PROMOTED, 100),
    (CANARY, None, Outcome.PROMOTED, 100),
    ("rolling", always(FAIL), Outcome.ROLLED_BACK, 100),
    (BLUE_GREEN, always(FAIL), Outcome.ROLLED_BACK, 0),
    (CANARY, always(FAIL), Outcome.ROLLED_BACK, 33.3),
    # Good at the first step, bad at the second: failed at step k.
    (CANARY, after(ONE_STEP, FAIL), Outcome.ROLLED_BACK, 50),
    # Good on the preview, bad once it serves everyone: switched straight back.
    (BLUE_GREEN, after(ONE_STEP, FAIL), Outcome.ROLLED_BACK, 100),
    ({"kind": "blue-green", "preview_analysis": False}, always(FAIL), Outcome.ROLLED_BACK, 100),
    # Prometheus down throughout: never promoted, nothing measured against the old one.
    ("rolling", always(DOWN), Outcome.ROLLED_BACK, 100),
    (CANARY, always(DOWN), Outcome.ROLLED_BACK, 33.3),
    (BLUE_GREEN, always(DOWN), Outcome.ROLLED_BACK, 0),
]


@pytest.mark.parametrize(("strategy", "script", "outcome", "exposure"), CASES)
def test_strategy_ends_judged(strategy, script, outcome, exposure):
    ending, target, _ = release(strategy, {NEW.version: script} if script else None)
    assert ending.outcome is outcome, ending.reason
    assert_only(target, NEW if outcome is Outcome.PROMOTED else OLD)
    assert target.max_share(NEW) == pytest.approx(exposure, abs=0.1)
    if outcome is Outcome.PROMOTED:
        assert target.stable == NEW
    else:
        assert target.stable == OLD and "restored and verified" in ending.reason


def test_canary_failed_at_step_k_names_the_step():
    ending, _, _ = release(CANARY, {NEW.version: after(ONE_STEP, FAIL)})
    assert ending.reason.startswith("step 4 (canary at 50%): error-rate")


def test_blue_green_failure_after_the_switch_says_so():
    ending, target, _ = release(BLUE_GREEN, {NEW.version: after(ONE_STEP, FAIL)})
    assert ending.reason.startswith("after the switch:")
    assert "address preview on" in target.calls and "scale stable x2" in target.calls


def test_blue_green_keeps_the_old_version_for_the_scale_down_delay():
    _, target, r = release({**BLUE_GREEN, "scale_down_delay": "45s"})
    assert r.notes == ["kept the old version for 45 s after the switch"]
    # After the delay, the stable workload takes the judged version and the app's address
    # goes back to it; then the preview goes.
    assert target.calls == [
        "mark 2.0.0", "run preview 2.0.0 x2", "address preview on", "scale stable x0",
        "run stable 2.0.0 x2", "scale preview x0", "remove preview", "unmark 2.0.0",
    ]


def test_prometheus_down_says_the_restored_version_could_not_be_verified():
    ending, _, _ = release("rolling", {NEW.version: always(DOWN), OLD.version: always(DOWN)})
    assert ending.outcome is Outcome.ROLLED_BACK
    assert "consecutive errors" in ending.reason
    assert "1.0.0 restored, but could not verify it" in ending.reason


def test_restore_that_does_not_verify_fails_naming_it():
    ending, target, _ = release(CANARY, {NEW.version: always(FAIL), OLD.version: always(FAIL)})
    assert ending.outcome is Outcome.FAILED
    assert "1.0.0 restored but it did not verify" in ending.reason
    assert_only(target, OLD)


def test_restore_that_fails_names_what_runs_now():
    target = FakeTarget.running(OLD)
    target.restore_fails = True
    ending, target, _ = release("rolling", {NEW.version: always(FAIL)}, target=target)
    assert ending.outcome is Outcome.FAILED
    assert "the restore failed" in ending.reason
    assert "running now: stable workload on 2.0.0 (2/2)" in ending.reason
    assert target.in_flight is not None  # left for recovery to finish


@pytest.mark.parametrize("strategy", ["rolling", "blue-green", CANARY])
def test_a_version_that_cannot_start_is_rolled_back(strategy):
    target = FakeTarget.running(OLD)
    target.broken.add(NEW.version)
    ending, target, _ = release(strategy, target=target)
    assert ending.outcome is Outcome.ROLLED_BACK
    assert ending.reason.startswith("deploy failed: 3 tasks of 2.0.0 failed to start")
    assert_only(target, OLD)


@pytest.mark.parametrize(("answer", "outcome", "words"), [
    (Answer(True, "looks fine", "ops"), Outcome.PROMOTED, "approved by ops (looks fine)"),
    (Answer(False, "not today", "ops"), Outcome.ROLLED_BACK, "rejected by ops (not today)"),
    (None, Outcome.ROLLED_BACK, "no answer in time: rolled back"),
])
@pytest.mark.parametrize("strategy", ["rolling", "blue-green", CANARY])
def test_inconclusive_analysis_pauses_for_a_person(strategy, answer, outcome, words):
    person = Person(answer)
    ending, target, _ = release(strategy, {NEW.version: after(0, None)}, person=person,
                               on_inconclusive="pause")
    assert person.asked and all(q.startswith("inconclusive analysis") for q in person.asked)
    assert ending.outcome is outcome and words in ending.reason
    assert_only(target, NEW if outcome is Outcome.PROMOTED else OLD)


def test_a_promotion_on_timeout_is_only_for_approve_steps():
    strategy = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}},
                                            {"approve": {"on_timeout": "promote"}}]}
    ending, target, _ = release(strategy, person=Person(None))
    assert ending.outcome is Outcome.PROMOTED and "no answer in time: promoted" in ending.reason
    assert_only(target, NEW)


def test_approve_step_rejected_rolls_back_at_that_step():
    strategy = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}}, {"approve": {}},
                                            {"weight": 50}, {"analysis": {}}]}
    person = Person(Answer(False, "", "ops"))
    ending, target, _ = release(strategy, person=person)
    assert person.asked == ["canary at 33%: promote 2.0.0?"]
    assert ending.outcome is Outcome.ROLLED_BACK and ending.reason.startswith("step 3 ")
    assert target.max_share(NEW) == pytest.approx(33.3, abs=0.1)


def test_blue_green_approval_before_the_switch():
    person = Person(Answer(False, "", "ops"))
    ending, target, _ = release({**BLUE_GREEN, "approve_switch": True}, person=person)
    assert ending.outcome is Outcome.ROLLED_BACK and "before the switch" in ending.reason
    assert target.max_share(NEW) == 0


@pytest.mark.parametrize(("strategy", "at"), [("rolling", 1.5), (CANARY, 3.0),
                                              (BLUE_GREEN, 1.5), (BLUE_GREEN, 10.0)])
def test_abort_restores_the_stable_version(strategy, at):
    ending, target, _ = release(strategy, abort_after=at)
    assert ending.outcome is Outcome.ABORTED, ending.reason
    assert "aborted: ops@example with ferryman abort" in ending.reason
    assert "1.0.0 restored and verified" in ending.reason
    assert_only(target, OLD)


def test_first_install_of_a_canary_is_a_plain_deploy():
    target = FakeTarget()
    ending, target, r = release(CANARY, target=target)
    assert ending.outcome is Outcome.PROMOTED
    assert r.notes == ["first install: deployed directly instead of canary"]
    assert_only(target, NEW)


def test_failed_first_install_removes_everything():
    ending, target, _ = release("rolling", {NEW.version: always(FAIL)}, target=FakeTarget())
    assert ending.outcome is Outcome.ROLLED_BACK and "no earlier version" in ending.reason
    assert target.workloads == {}


def test_an_unexpected_error_restores_then_goes_on():
    target = FakeTarget.running(OLD)

    class Boom(Exception):
        pass

    def broken_ask(question, approval):
        raise Boom("the Prefect API answered 500")

    with pytest.raises(Boom):
        release("rolling", {NEW.version: after(0, None)}, target=target,
                person=broken_ask, on_inconclusive="pause")
    assert_only(target, OLD)


def test_canary_share_is_noted_per_weight_step():
    _, _, r = release(CANARY)
    assert r.notes == ["step 1: canary at 33% (asked 33%)", "step 3: canary at 50% (asked 50%)"]


def test_decision_of_an_answer():
    approval = Approval(on_timeout="rollback")
    assert decision_of("q?", None, approval).verdict is Verdict.ROLLBACK
    assert decision_of("q?", Answer(True), approval).verdict is Verdict.PROMOTE
