"""A person's decision during a release: the paused run's form in the Prefect UI, and the
`ferryman approve` / `ferryman rollback` answers to it from a terminal.

A strategy asks (an `approve` step, blue-green's `approve_switch`, or an inconclusive
analysis with `on_inconclusive: pause`); the run publishes what it measured so far, pauses
with the form, and takes whatever comes first: an answer, or the timeout's default action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from prefect import get_run_logger, pause_flow_run
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from pydantic import Field

from flows.reporting import emit, publish_analysis_so_far
from tasks.analysis.decision import Decision
from tasks.releases import MeasurementRecord, ReleaseResult
from tasks.spec import Approval, ReleaseSpec
from tasks.strategies.base import Answer, Ask, decision_of

POLL_SECONDS = 2
"""How often a paused run looks for an answer."""


class ApprovalForm(RunInput):
    """The form of a paused release in the Prefect UI."""

    decision: Literal["promote", "roll back"] = Field(
        "roll back", description="Go on with the new version, or restore the stable one."
    )
    comment: str = Field("", description="Why; it goes into the release report.")
    by: str = Field("a person, through the Prefect UI", description="Who decides.")


def ask_a_person(
    spec: ReleaseSpec, result: ReleaseResult,
    measured: Callable[[], list[MeasurementRecord]],
) -> Ask:
    """The `person` of a release inside a flow: show what was `measured` so far, then pause
    with the form until answered."""

    def ask(question: str, approval: Approval) -> Decision:
        log = get_run_logger()
        timeout = int(approval.timeout or spec.analysis.pause_timeout)
        log.warning("waiting up to %d s for a person: %s", timeout, question)
        publish_analysis_so_far(spec, result.version, measured())
        emit(spec, "paused", result)
        try:
            form = pause_flow_run(
                wait_for_input=ApprovalForm.with_initial_data(
                    description=f"**{spec.app} {result.version}**: {question}"),
                timeout=timeout, poll_interval=POLL_SECONDS,
            )
        except FlowPauseTimeout:
            return decision_of(question, None, approval)
        return decision_of(
            question, Answer(form.decision == "promote", form.comment, form.by), approval)

    return ask


def answer(run_id, decision: Literal["promote", "roll back"], comment: str, by: str) -> None:
    """Resume a paused release run with a person's answer (`ferryman approve`)."""
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run_id, run_input={"decision": decision, "comment": comment, "by": by})


def paused_run_of(app: str):
    """The release run of `app` that waits for a person, or None."""
    from prefect.client.schemas.objects import StateType

    from flows.triggers import release_run_of

    return release_run_of(app, [StateType.PAUSED])
