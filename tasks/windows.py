"""Upgrade windows: when an app may be released, and which pending release goes first.

The release flow calls `schedule_release` for every release that arrives and, when that is
later, defers the release to then (`flows.triggers.defer`); its report calls
`overrun_seconds`.
Every function here is pure: the time is always an argument, never read from a clock.

How a window is read:

- `schedule` (5-field cron, evaluated on the wall clock of `timezone`) gives the window's
  starts; the window lasts `duration` of elapsed time from each start.
- A start that does not exist on its day (the clock jumps over it when summer time begins,
  e.g. 02:30 Europe/Berlin on 2026-03-29) opens at the first instant after the jump (03:00
  CEST), and still lasts `duration`. A start that exists twice (the clock goes back,
  02:30 Europe/Berlin on 2026-10-25) opens at its first occurrence (02:30 CEST), once.
  This is what Debian's cron does with such jobs, so a window never opens twice in one day
  and never silently skips a day.
- `freeze` lists dates and date ranges (inclusive, on the window's wall clock); a window whose
  start falls on a frozen date does not open at all. A window that started the day before a
  freeze may run into it: it was open before the freeze began.
- A release may only start inside an open window; once started it is never cut off:
  `overrun_seconds` says how far past the window's end it ran, for the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from tasks.durations import Seconds
from tasks.errors import SpecError
from tasks.tag_policy import parse_version

_HORIZON_YEARS = 8
"""How far `next_opening` looks: past 2100, the next 29 February is eight years away."""
_SLACK = timedelta(days=1)
"""Wall clock and elapsed time differ by at most a day (Samoa skipped one in 2011)."""


def _freeze_entry(value: object) -> object:
    # `2026-12-24` is shorthand for `{from: 2026-12-24, to: 2026-12-24}`.
    if isinstance(value, date | str) and not isinstance(value, datetime):
        try:
            day = value if isinstance(value, date) else date.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"not a date: {value!r} (use YYYY-MM-DD or {{from: YYYY-MM-DD, to: YYYY-MM-DD}})"
            ) from None
        return {"from": day, "to": day}
    return value


class FreezeRange(BaseModel):
    """Dates, inclusive, on which no window starts."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: date = Field(alias="from")
    end: date = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> FreezeRange:
        if self.end < self.start:
            raise ValueError(f"to {self.end} is before from {self.start}")
        return self

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


class UpgradeWindow(BaseModel):
    """The spec's `window`: when releases of the app may start (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: str
    """5-field cron expression (minute hour day-of-month month day-of-week) of window starts."""
    duration: Annotated[Seconds, Field(gt=0)]
    timezone: str
    """IANA time zone name, e.g. `Europe/Berlin`; the schedule and freeze dates are read in it."""
    freeze: list[Annotated[FreezeRange, BeforeValidator(_freeze_entry)]] = Field(
        default_factory=list
    )

    @field_validator("schedule")
    @classmethod
    def _is_cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(
                f"{value!r} is not a 5-field cron expression "
                "(minute hour day-of-month month day-of-week, e.g. '0 2 * * TUE')"
            )
        try:
            CronSim(value, datetime(2000, 1, 1))
        except CronSimError as e:
            raise ValueError(f"{value!r} is not a valid cron expression: {e}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _is_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as "
                             "'Europe/Berlin' or 'UTC')") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def frozen_on(self, day: date) -> FreezeRange | None:
        """The freeze range covering `day`, if any."""
        return next((f for f in self.freeze if f.covers(day)), None)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"an aware datetime is needed, got the naive {at.isoformat()}")
    return at.astimezone(UTC)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a wall-clock start means, by the rule in the module docstring."""
    first = wall.replace(tzinfo=zone, fold=0)  # in an overlap, fold=0 is the first occurrence
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)
    # `wall` falls in a gap. fold=1 reads it with the offset after the jump, fold=0 with the
    # offset before; the jump is between the two readings. Find it to the second.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first.astimezone(UTC)
    after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _starts(
    window: UpgradeWindow, wall: datetime, reverse: bool
) -> Iterator[tuple[date, datetime]]:
    """(local start date, UTC start) of each window start after (or before) wall time `wall`."""
    zone = window.zone
    for start in CronSim(window.schedule, wall, reverse=reverse):
        yield start.date(), _instant(start, zone)


def _wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def _open_start(window: UpgradeWindow, at: datetime) -> datetime | None:
    """The start of the latest unfrozen window open at `at` (UTC), or None."""
    length = timedelta(seconds=window.duration)
    for day, start in _starts(window, _wall(at, window.zone) + _SLACK, reverse=True):
        if start > at:
            continue
        if start + length <= at:
            return None  # starts come latest first, so every earlier window closed earlier
        if window.frozen_on(day) is None:
            return start
    return None


def is_open(window: UpgradeWindow, at: datetime) -> bool:
    """Whether a release may start at `at` (aware): a window is open and did not start frozen."""
    return _open_start(window, _utc(at)) is not None


def closes_at(window: UpgradeWindow, at: datetime) -> datetime | None:
    """When the window open at `at` closes (aware UTC), or None when no window is open then."""
    start = _open_start(window, _utc(at))
    return None if start is None else start + timedelta(seconds=window.duration)


def next_opening(window: UpgradeWindow, after: datetime) -> datetime:
    """The earliest instant at or after `after` at which a window is open (aware UTC).

    `after` itself when a window is open then; otherwise the next start not on a frozen date.
    Raises SpecError when no window opens within eight years (every start frozen, or a
    schedule such as 30 February that never fires).
    """
    after = _utc(after)
    if _open_start(window, after) is not None:
        return after
    wall = _wall(after, window.zone) - _SLACK
    limit = wall.year + _HORIZON_YEARS
    starts = _starts(window, wall, reverse=False)
    while (item := next(starts, None)) is not None and item[0].year <= limit:
        day, start = item
        if start < after:
            continue
        frozen = window.frozen_on(day)
        if frozen is None:
            return start
        # Jump over the whole freeze instead of walking through its every start.
        resume = datetime.combine(frozen.end + timedelta(days=1), time()) - timedelta(seconds=1)
        starts = _starts(window, resume, reverse=False)
    raise SpecError(
        f"upgrade window {window.schedule!r} ({window.timezone}) does not open within "
        f"{_HORIZON_YEARS} years after {after.isoformat()}: check its schedule and freeze dates"
    )


def schedule_release(window: UpgradeWindow | None, requested_at: datetime) -> datetime:
    """When a release requested at `requested_at` may start (aware UTC).

    Called by the triggers: no window means at once; inside an open window, at once; outside,
    at the next window's start (the release waits: it is neither lost nor run early).
    """
    if window is None:
        return _utc(requested_at)
    return next_opening(window, requested_at)


def overrun_seconds(window: UpgradeWindow | None, started_at: datetime,
                    finished_at: datetime) -> float:
    """How many seconds a release ran past the end of the window it started in (0: none).

    For the release report: a release is never cut off when its window closes, but the report
    says it overran. A release that started with no window open (a manual run) overran nothing.
    """
    if window is None:
        return 0.0
    end = closes_at(window, started_at)
    if end is None:
        return 0.0
    return max(0.0, (_utc(finished_at) - end).total_seconds())


@dataclass(frozen=True)
class PendingRelease:
    """A release waiting to run: deferred to its window, or started while another runs."""

    version: str
    requested_at: datetime
    digest: str | None = None


@dataclass(frozen=True)
class PendingReleases:
    """The releases waiting for one app's window; when it opens, only `newest()` runs.

    Newest means the highest semver precedence when every pending version is a semantic
    version (a later request for the same version wins, e.g. a re-pushed tag); when any is
    not, the latest request wins, because nothing else orders such tags.
    """

    requests: tuple[PendingRelease, ...] = field(default_factory=tuple)

    def add(self, request: PendingRelease) -> PendingReleases:
        return PendingReleases((*self.requests, request))

    def newest(self) -> PendingRelease | None:
        if not self.requests:
            return None
        versions = [parse_version(r.version) for r in self.requests]
        order: list[tuple[Any, ...]]
        if all(v is not None for v in versions):
            order = [(v, _utc(r.requested_at), i)
                     for i, (v, r) in enumerate(zip(versions, self.requests, strict=True))]
        else:
            order = [(_utc(r.requested_at), i) for i, r in enumerate(self.requests)]
        return self.requests[max(order)[-1]]

    def __len__(self) -> int:
        return len(self.requests)
