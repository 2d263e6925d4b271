"""Every branch of every strategy, in-process: the real targets and routers over in-memory
APIs of the platforms, scripted Prometheus answers and a fake clock.

One row per case: the strategy, what the new version does, how the release ends, and the
most of the app's traffic the new version ever had; the table runs on every platform. After
every case the app must serve its stable version alone, at full size, unless the new one was
promoted. The other cases run on Swarm, and on the toy platform where they read its call log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tasks.analysis.decision import Decision, Verdict
from tasks.platforms import get_router
from tasks.releases import Outcome
from tasks.spec import Approval
from tasks.strategies import Release, carry_out
from tasks.strategies.base import Answer, call_function, decision_of
from tasks.targets import InFlight
from tests.strategies.beds import (
    BEDS,
    COUNT,
    NEW,
    OLD,
    PLATFORMS,
    Bed,
    assert_only,
    swarm_bed,
    toy_bed,
)
from tests.strategies.fakes import (
    DOWN,
    FakeClock,
    ScriptedPrometheus,
    after,
    always,
)

PER_ROUND = 2  # the demo specs have two metrics
CANARY = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}}, {"weight": 50},
                                      {"analysis": {}}]}
BLUE_GREEN = {"kind": "blue-green", "scale_down_delay": "30s"}


@dataclass
class Person:
    """Answers every question the same way (None: never answers) and keeps the questions."""

    answer: Answer | None = None
    asked: list[str] = field(default_factory=list)

    def __call__(self, question: str, approval: Approval) -> Decision:
        self.asked.append(question)
        return decision_of(question, self.answer, approval)


def release(strategy, script=None, person=None, bed: Bed | None = None, abort_after=None,
            **analysis):
    """Release NEW over the bed (the Swarm one unless given) and return how it ended."""
    bed = bed or swarm_bed(strategy, **analysis)
    clock = FakeClock()
    prometheus = ScriptedPrometheus(script)

    def aborted() -> str | None:
        if abort_after is not None and clock.t >= abort_after:
            return "ops@example with ferryman abort"
        return None

    r = Release(
        spec=bed.spec, target=bed.target, router=get_router(bed.spec, bed.target),
        new=NEW, stable=bed.target.status().stable, person=person or Person(),
        interrupted=aborted, step=call_function, provider=prometheus, clock=clock.clock(),
    )
    ending = carry_out(r, InFlight("run-1", NEW.version, "2026-11-27T00:00:00+00:00"))
    return ending, bed, r


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


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(("strategy", "script", "outcome", "exposure"), CASES)
def test_strategy_ends_judged(platform, strategy, script, outcome, exposure):
    bed = BEDS[platform](strategy)
    ending, bed, _ = release(strategy, {NEW.version: script} if script else None, bed=bed)
    assert ending.outcome is outcome, ending.reason
    assert_only(bed.target, NEW if outcome is Outcome.PROMOTED else OLD)
    assert bed.max_share(NEW) == pytest.approx(exposure, abs=0.1)
    if outcome is not Outcome.PROMOTED:
        assert "restored and verified" in ending.reason


def test_canary_failed_at_step_k_names_the_step():
    ending, _, _ = release(CANARY, {NEW.version: after(ONE_STEP, FAIL)})
    assert ending.reason.startswith("step 4 (canary at 50%): error-rate")


def test_blue_green_failure_after_the_switch_says_so():
    ending, bed, _ = release(BLUE_GREEN, {NEW.version: after(ONE_STEP, FAIL)})
    assert ending.reason.startswith("after the switch:")
    assert bed.max_share(NEW) == 100  # it did serve everyone, then the old version came back
    assert_only(bed.target, OLD)


def test_blue_green_keeps_the_old_version_for_the_scale_down_delay():
    strategy = {**BLUE_GREEN, "scale_down_delay": "45s"}
    _, bed, r = release(strategy, bed=toy_bed(strategy))
    assert r.notes == ["kept the old version for 45 s after the switch"]
    # After the delay, the stable workload takes the judged version and the app's address
    # goes back to it; then the preview goes.
    assert bed.target.calls == [
        "mark 2.0.0", "run preview 2.0.0 x2", "address to preview", "run stable 2.0.0 x2",
        "address to stable", "remove preview", "unmark 2.0.0",
    ]


def test_prometheus_down_says_the_restored_version_could_not_be_verified():
    ending, _, _ = release("rolling", {NEW.version: always(DOWN), OLD.version: always(DOWN)})
    assert ending.outcome is Outcome.ROLLED_BACK
    assert "consecutive errors" in ending.reason
    assert "1.0.0 restored, but could not verify it" in ending.reason


def test_restore_that_does_not_verify_fails_naming_it():
    ending, bed, _ = release(CANARY, {NEW.version: always(FAIL), OLD.version: always(FAIL)})
    assert ending.outcome is Outcome.FAILED
    assert "1.0.0 restored but it did not verify" in ending.reason
    status = bed.target.status()
    assert [w.role.value for w in status.workloads] == ["stable"]
    assert status.current == OLD and status.in_flight is None


def test_restore_that_fails_names_what_runs_now():
    bed = toy_bed("rolling")
    bed.target.restore_fails = True
    ending, bed, _ = release("rolling", {NEW.version: always(FAIL)}, bed=bed)
    assert ending.outcome is Outcome.FAILED
    assert "the restore failed" in ending.reason
    assert "running now: stable workload on 2.0.0 (2/2)" in ending.reason
    assert bed.target.status().in_flight is not None  # left for recovery to finish


@pytest.mark.parametrize(("answer", "outcome", "words"), [
    (Answer(True, "looks fine", "ops"), Outcome.PROMOTED, "approved by ops (looks fine)"),
    (Answer(False, "not today", "ops"), Outcome.ROLLED_BACK, "rejected by ops (not today)"),
    (None, Outcome.ROLLED_BACK, "no answer in time: rolled back"),
])
@pytest.mark.parametrize("strategy", ["rolling", "blue-green", CANARY])
def test_inconclusive_analysis_pauses_for_a_person(strategy, answer, outcome, words):
    person = Person(answer)
    ending, bed, _ = release(strategy, {NEW.version: after(0, None)}, person=person,
                             on_inconclusive="pause")
    assert person.asked and all(q.startswith("inconclusive analysis") for q in person.asked)
    assert ending.outcome is outcome and words in ending.reason
    assert_only(bed.target, NEW if outcome is Outcome.PROMOTED else OLD)


def test_a_promotion_on_timeout_is_only_for_approve_steps():
    strategy = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}},
                                            {"approve": {"on_timeout": "promote"}}]}
    ending, bed, _ = release(strategy, person=Person(None))
    assert ending.outcome is Outcome.PROMOTED and "no answer in time: promoted" in ending.reason
    assert_only(bed.target, NEW)


def test_approve_step_rejected_rolls_back_at_that_step():
    strategy = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}}, {"approve": {}},
                                            {"weight": 50}, {"analysis": {}}]}
    person = Person(Answer(False, "", "ops"))
    ending, bed, _ = release(strategy, person=person)
    assert person.asked == ["canary at 33%: promote 2.0.0?"]
    assert ending.outcome is Outcome.ROLLED_BACK and ending.reason.startswith("step 3 ")
    assert bed.max_share(NEW) == pytest.approx(33.3, abs=0.1)


def test_blue_green_approval_before_the_switch():
    person = Person(Answer(False, "", "ops"))
    ending, bed, _ = release({**BLUE_GREEN, "approve_switch": True}, person=person)
    assert ending.outcome is Outcome.ROLLED_BACK and "before the switch" in ending.reason
    assert bed.max_share(NEW) == 0


@pytest.mark.parametrize(("strategy", "at"), [("rolling", 1.5), (CANARY, 3.0),
                                              (BLUE_GREEN, 1.5), (BLUE_GREEN, 10.0)])
def test_abort_restores_the_stable_version(strategy, at):
    ending, bed, _ = release(strategy, abort_after=at)
    assert ending.outcome is Outcome.ABORTED, ending.reason
    assert "aborted: ops@example with ferryman abort" in ending.reason
    assert "1.0.0 restored and verified" in ending.reason
    assert_only(bed.target, OLD)


def test_first_install_of_a_canary_is_a_plain_deploy():
    ending, bed, r = release(CANARY, bed=swarm_bed(CANARY, installed=False))
    assert ending.outcome is Outcome.PROMOTED
    assert r.notes == ["first install: deployed directly instead of canary"]
    assert_only(bed.target, NEW)


def test_failed_first_install_removes_everything():
    bed = swarm_bed("rolling", installed=False)
    ending, bed, _ = release("rolling", {NEW.version: always(FAIL)}, bed=bed)
    assert ending.outcome is Outcome.ROLLED_BACK and "no earlier version" in ending.reason
    status = bed.target.status()
    assert not status.exists and status.workloads == ()


def test_an_unexpected_error_restores_then_goes_on():
    bed = swarm_bed("rolling", on_inconclusive="pause")

    class Boom(Exception):
        pass

    def broken_ask(question, approval):
        raise Boom("the Prefect API answered 500")

    with pytest.raises(Boom):
        release("rolling", {NEW.version: after(0, None)}, bed=bed, person=broken_ask)
    assert_only(bed.target, OLD)


def test_canary_share_is_noted_per_weight_step():
    _, _, r = release(CANARY)
    assert r.notes == ["step 1: canary at 33% (asked 33%)", "step 3: canary at 50% (asked 50%)"]


def test_decision_of_an_answer():
    approval = Approval(on_timeout="rollback")
    assert decision_of("q?", None, approval).verdict is Verdict.ROLLBACK
    assert decision_of("q?", Answer(True), approval).verdict is Verdict.PROMOTE
