"""The record of one release: what ran before, what runs now, the decision and why.

Built by the release flow, printed by the CLI (`--json`) and rendered as the Prefect
release-report and analysis-table artifacts.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from tasks.analysis.measurement import Measurement
from tasks.spec import Threshold


class Outcome(StrEnum):
    """How a release ended. Never unknown: a release that cannot say is `failed`."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    SKIPPED = "skipped"
    """A triggered release that did not run: a newer one superseded it, the running version
    is not older, or the image was released before. Nothing was changed."""
    DEFERRED = "deferred"
    """A release that arrived outside its app's upgrade window: scheduled for the opening."""
    ABORTED = "aborted"
    """Someone stopped the release; the stable version was restored and verified."""


class MeasurementRecord(BaseModel):
    """A measurement as stored in the release record (JSON-friendly)."""

    metric: str
    index: int
    at: str
    phase: str
    value: float | None
    message: str
    version: str
    step: str = ""
    """Which analysis of the release took it: `rolling`, `preview`, `canary-25`,
    `restored`..."""

    @classmethod
    def of(cls, m: Measurement, version: str, step: str = "") -> MeasurementRecord:
        return cls(
            metric=m.metric, index=m.index, at=m.at.isoformat(timespec="seconds"),
            phase=m.phase.value, value=m.value, message=m.message, version=version, step=step,
        )


class StepRecord(BaseModel):
    """One step of the release: when it started and ended (seconds from the release's start)."""

    name: str
    start: float
    end: float
    outcome: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


class ReleaseResult(BaseModel):
    """Everything a person or a program needs to know about one release."""

    app: str
    version: str
    strategy: str
    outcome: Outcome
    reason: str
    digest: str | None = None
    image: str | None = None
    previous_version: str | None = None
    previous_image: str | None = None
    measurements: list[MeasurementRecord] = Field(default_factory=list)
    rollback_measurements: list[MeasurementRecord] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    seconds: float = 0.0
    trigger: str = "manual"
    """`manual` (CLI, UI), `webhook`, `poller` or `window` (a deferred release at its opening)."""
    started_by: str = ""
    """Who or what asked for the release, in words (a user, a registry push, a poller)."""
    window_overrun: float | None = None
    """Seconds the release ran past the end of its upgrade window (None: the app has none)."""
    notes: list[str] = Field(default_factory=list)
    """How the strategy went, in words: the canary's shares, the delay kept, a first install."""

    def exit_code(self) -> int:
        """The CLI's exit code: 0 promoted, 3 rolled back cleanly (after a failed analysis or
        an abort), 4 not run now (skipped or deferred to the upgrade window), 1 anything
        else."""
        codes = {Outcome.PROMOTED: 0, Outcome.ROLLED_BACK: 3, Outcome.ABORTED: 3,
                 Outcome.SKIPPED: 4, Outcome.DEFERRED: 4}
        return codes.get(self.outcome, 1)


def threshold_text(threshold: Threshold) -> str:
    """`min 0.9 max 1` style text for tables."""
    parts = []
    if threshold.min is not None:
        parts.append(f"min {threshold.min:g}")
    if threshold.max is not None:
        parts.append(f"max {threshold.max:g}")
    return " ".join(parts)


def _overrun(seconds: float) -> str:
    if seconds <= 0:
        return "finished inside the window"
    return f"**overran the window by {seconds:.0f} s** (a release is never cut off half-way)"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def analysis_rows(records: list[MeasurementRecord], thresholds: dict[str, str]) -> list[dict]:
    """Rows of the analysis table artifact: one per measurement."""
    return [
        {
            "version": r.version, "step": r.step, "metric": r.metric, "#": r.index + 1,
            "at": r.at,
            "value": _fmt(r.value), "threshold": thresholds.get(r.metric, ""),
            "phase": r.phase, "note": r.message,
        }
        for r in records
    ]


def render_report(result: ReleaseResult) -> str:
    """The release report artifact, in markdown."""
    before = (
        f"{result.previous_version} (`{result.previous_image}`)"
        if result.previous_version else "nothing (first install)"
    )
    lines = [
        f"# {result.app}: {result.previous_version or 'new'} -> {result.version}",
        "",
        f"**Outcome: {result.outcome.value}** — {result.reason}",
        "",
        "| | |",
        "|---|---|",
        f"| ran before | {before} |",
        f"| released | {result.version} (`{result.image or 'not pushed'}`) |",
        f"| digest | `{result.digest or '—'}` |",
        f"| strategy | {result.strategy} |",
        f"| trigger | {result.trigger}{f' ({result.started_by})' if result.started_by else ''} |",
        *(
            [f"| upgrade window | {_overrun(result.window_overrun)} |"]
            if result.window_overrun is not None else []
        ),
        f"| duration | {result.seconds:.1f} s |",
        *([f"| how it went | {'; '.join(result.notes)} |"] if result.notes else []),
        "",
        "## Steps",
        "",
        "| step | outcome | seconds |",
        "|---|---|---|",
        *[f"| {s.name} | {s.outcome} | {s.seconds:.1f} |" for s in result.steps],
    ]
    for title, records in (
        ("Analysis of the new version", result.measurements),
        ("Analysis of the restored version", result.rollback_measurements),
    ):
        if records:
            lines += ["", f"## {title}", "", "| step | metric | # | value | phase | note |",
                      "|---|---|---|---|---|---|"]
            lines += [
                f"| {r.step} | {r.metric} | {r.index + 1} | {_fmt(r.value)} | {r.phase} "
                f"| {r.message} |"
                for r in records
            ]
    return "\n".join(lines) + "\n"
