"""What a strategy works with: the release's spec, platform, versions and helpers.

A strategy is a short sequence of steps over a `Target` (the workloads) and a `Router`
(the traffic), plus the analysis; it never knows which platform it runs on. Each step is a
Prefect task; `Release.step` calls it, so that tests can run every strategy in-process over
fakes by calling the tasks' functions instead (`call_function`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.analysis.base import MetricProvider
from tasks.analysis.decision import Decision, Verdict
from tasks.analysis.runner import AnalysisResult, Watch
from tasks.errors import PermanentError
from tasks.routers import Router
from tasks.spec import AnalysisOverride, Approval, ReleaseSpec
from tasks.steps import Clock, verify
from tasks.targets import Target, Version

StepRunner = Callable[..., Any]
"""Runs one step: `(task, *args, **kwargs) -> its result`."""


def call_task(task, *args, **kwargs):
    """Inside a flow: each step is a task run in the Prefect UI."""
    return task(*args, **kwargs)


def call_function(task, *args, **kwargs):
    """Outside Prefect (tests): the step's function itself."""
    return task.fn(*args, **kwargs)


Ask = Callable[[str, Approval], Decision]
"""Asks a person (why, and how long to wait): PROMOTE to go on, ROLLBACK to stop."""


@dataclass(frozen=True)
class Answer:
    """What a person answered: go on (promote) or not, and why."""

    promote: bool
    comment: str = ""
    by: str = "a person"


def decision_of(question: str, answer: Answer | None, approval: Approval) -> Decision:
    """A person's answer to `question` as a decision; no answer (None) takes the
    approval's `on_timeout` action, rollback unless the spec says otherwise."""
    if answer is None:
        verdict = Verdict.PROMOTE if approval.on_timeout == "promote" else Verdict.ROLLBACK
        action = "promoted" if verdict is Verdict.PROMOTE else "rolled back"
        return Decision(verdict, f"{question} no answer in time: {action} (on_timeout)")
    note = f" ({answer.comment})" if answer.comment else ""
    if answer.promote:
        return Decision(Verdict.PROMOTE, f"{question} approved by {answer.by}{note}")
    return Decision(Verdict.ROLLBACK, f"{question} rejected by {answer.by}{note}")
Interrupted = Callable[[], str | None]
"""Says why the release must stop now (someone aborted it), or None."""


class Aborted(PermanentError):
    """Someone stopped the release (`ferryman abort`, Cancel in the UI); the message says who."""


@dataclass(frozen=True)
class Analysed:
    """One analysis a strategy ran: at which step, of which version, with what result."""

    step: str
    version: Version
    result: AnalysisResult


@dataclass
class Release:
    """One release as a strategy drives it."""

    spec: ReleaseSpec
    target: Target
    router: Router
    new: Version
    stable: Version | None
    """What users get now and what a rollback restores (None: a first install)."""
    person: Ask
    """Where a question goes to a person (a paused run's form, in a flow)."""
    interrupted: Interrupted = lambda: None
    step: StepRunner = call_task
    provider: MetricProvider | None = None
    clock: Clock = field(default_factory=Clock)
    analyses: list[Analysed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the report should say of the way it went (shares given, delays kept)."""
    answers: list[str] = field(default_factory=list)
    """Every decision a person (or their silence) made, in words."""

    def ask(self, question: str, approval: Approval) -> Decision:
        """Ask a person; their decision is kept for the release's reason."""
        self.checkpoint()
        decision = self.person(question, approval)
        self.answers.append(decision.reason)
        self.checkpoint()
        return decision

    def checkpoint(self) -> None:
        """Between steps: raise Aborted if someone stopped the release."""
        why = self.interrupted()
        if why is not None:
            raise Aborted(why)

    def analyse(self, step: str, override: AnalysisOverride | None = None,
                watch: Watch | None = None) -> Decision:
        """Judge the new version now; an inconclusive pause asks a person."""
        self.checkpoint()

        def stop() -> Decision | None:
            why = self.interrupted()
            if why is not None:
                return Decision(Verdict.ROLLBACK, f"aborted: {why}")
            return watch() if watch is not None else None

        result = self.step(verify, self.spec, self.new, self.stable, self.provider, step,
                           override, stop, self.clock)
        self.analyses.append(Analysed(step, self.new, result))
        self.checkpoint()
        decision = result.decision
        if decision.verdict is Verdict.PAUSE:
            timeout = Approval(timeout=self.spec.analysis.pause_timeout, on_timeout="rollback")
            decision = self.ask(f"inconclusive analysis ({decision.reason}):", timeout)
        return decision

    def wait(self, seconds: float, why: str) -> None:
        """Sleep `seconds`, stopping early if the release is aborted."""
        self.notes.append(why)
        deadline = self.clock.monotonic() + seconds
        while (left := deadline - self.clock.monotonic()) > 0:
            self.checkpoint()
            self.clock.sleep(min(left, 1.0))
        self.checkpoint()


PROMOTE = Verdict.PROMOTE


def passed(decision: Decision) -> bool:
    return decision.verdict is PROMOTE
