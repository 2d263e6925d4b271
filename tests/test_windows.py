"""Upgrade windows on an injected clock: inside, outside, across midnight, DST days, freezes."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from tasks.errors import SpecError
from tasks.windows import (
    PendingRelease,
    PendingReleases,
    UpgradeWindow,
    closes_at,
    is_open,
    next_opening,
    overrun_seconds,
    schedule_release,
)

BERLIN = ZoneInfo("Europe/Berlin")


def window(schedule="0 2 * * TUE", duration="2h", timezone="Europe/Berlin", freeze=()):
    return UpgradeWindow(
        schedule=schedule, duration=duration, timezone=timezone, freeze=list(freeze)
    )


def berlin(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


TUESDAYS = window()  # Tuesdays 02:00-04:00 Europe/Berlin
NIGHTLY_2230 = window("30 22 * * *", "3h", "Europe/Berlin")  # 22:30 - 01:30 the next day
DAILY_0230 = window("30 2 * * *", "1h", "Europe/Berlin")  # 02:30 is in the DST gap and overlap


# Inside and outside.


def test_window_is_open_inside_and_closed_outside():
    assert is_open(TUESDAYS, berlin(2026, 6, 2, 2, 0))  # the start itself
    assert is_open(TUESDAYS, berlin(2026, 6, 2, 3, 59, 59))
    assert not is_open(TUESDAYS, berlin(2026, 6, 2, 4, 0))  # the end is outside
    assert not is_open(TUESDAYS, berlin(2026, 6, 2, 1, 59))
    assert not is_open(TUESDAYS, berlin(2026, 6, 3, 2, 30))  # a Wednesday


def test_open_window_reports_when_it_closes_in_utc():
    end = closes_at(TUESDAYS, berlin(2026, 6, 2, 3, 0))
    assert end == datetime(2026, 6, 2, 2, 0, tzinfo=UTC)  # 04:00 CEST
    assert end.tzinfo is UTC


def test_closed_window_has_no_closing_time():
    assert closes_at(TUESDAYS, berlin(2026, 6, 2, 5, 0)) is None


def test_time_zone_of_the_clock_does_not_matter():
    inside_utc = datetime(2026, 6, 2, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert is_open(TUESDAYS, inside_utc)
    assert not is_open(window(timezone="UTC"), inside_utc)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware datetime"):
        is_open(TUESDAYS, datetime(2026, 6, 2, 2, 30))


# Scheduling: a release outside a window waits for its start.


def test_release_requested_outside_a_window_is_scheduled_for_the_window_start():
    requested = berlin(2026, 6, 3, 14, 0)  # a Wednesday afternoon
    assert schedule_release(TUESDAYS, requested) == berlin(2026, 6, 9, 2, 0).astimezone(UTC)


def test_release_requested_inside_a_window_starts_at_once():
    requested = berlin(2026, 6, 2, 3, 15)
    assert schedule_release(TUESDAYS, requested) == requested.astimezone(UTC)


def test_release_requested_at_the_window_end_waits_for_the_next_window():
    assert schedule_release(TUESDAYS, berlin(2026, 6, 2, 4, 0)) == berlin(2026, 6, 9, 2, 0)


def test_release_without_a_window_starts_at_once():
    requested = berlin(2026, 6, 3, 14, 0)
    assert schedule_release(None, requested) == requested


def test_next_opening_is_aware_utc():
    opening = next_opening(TUESDAYS, datetime(2026, 6, 3, tzinfo=UTC))
    assert opening.tzinfo is UTC and opening == datetime(2026, 6, 9, 0, 0, tzinfo=UTC)


# Across midnight.


def test_window_across_midnight_is_open_after_midnight():
    assert is_open(NIGHTLY_2230, berlin(2026, 6, 2, 23, 59))
    assert is_open(NIGHTLY_2230, berlin(2026, 6, 3, 0, 30))
    assert closes_at(NIGHTLY_2230, berlin(2026, 6, 3, 0, 30)) == berlin(2026, 6, 3, 1, 30)
    assert not is_open(NIGHTLY_2230, berlin(2026, 6, 3, 1, 30))


def test_release_after_a_midnight_window_closes_waits_for_the_evening():
    assert schedule_release(NIGHTLY_2230, berlin(2026, 6, 3, 2, 0)) == berlin(2026, 6, 3, 22, 30)


# DST: Europe/Berlin springs forward 02:00 -> 03:00 on 2026-03-29, falls back 03:00 -> 02:00
# on 2026-10-25 (both Sundays).


def test_start_in_the_spring_gap_opens_at_the_first_instant_after_it():
    opening = next_opening(DAILY_0230, berlin(2026, 3, 28, 12, 0))
    assert opening == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST: 02:30 never happens
    assert opening.astimezone(BERLIN).hour == 3 and opening.astimezone(BERLIN).minute == 0


def test_window_opened_late_by_the_gap_still_lasts_its_duration():
    assert is_open(DAILY_0230, berlin(2026, 3, 29, 3, 59))
    assert closes_at(DAILY_0230, berlin(2026, 3, 29, 3, 30)) == berlin(2026, 3, 29, 4, 0)
    assert not is_open(DAILY_0230, berlin(2026, 3, 29, 4, 0))


def test_day_after_the_spring_change_opens_at_the_usual_wall_time():
    assert next_opening(DAILY_0230, berlin(2026, 3, 29, 4, 0)) == berlin(2026, 3, 30, 2, 30)


def test_start_in_the_autumn_overlap_opens_once_at_the_first_occurrence():
    opening = next_opening(DAILY_0230, berlin(2026, 10, 24, 12, 0))
    assert opening == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, not CET
    # One elapsed hour later it is 02:30 again on the wall (CET): the window has closed,
    # and does not open a second time that night.
    second_0230 = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert second_0230.astimezone(BERLIN).strftime("%H:%M %Z") == "02:30 CET"
    assert not is_open(DAILY_0230, second_0230)
    assert next_opening(DAILY_0230, second_0230) == berlin(2026, 10, 26, 2, 30)


def test_window_duration_is_elapsed_time_across_the_autumn_change():
    two_hours = window("30 1 * * *", "2h", "Europe/Berlin")  # 01:30 CEST -> 02:30 CET
    assert closes_at(two_hours, berlin(2026, 10, 25, 1, 45)) == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC
    )


def test_tuesday_window_keeps_its_wall_time_across_dst_changes():
    before = next_opening(TUESDAYS, berlin(2026, 3, 18, 12, 0))  # Tue 24 March, CET
    after = next_opening(TUESDAYS, berlin(2026, 3, 25, 12, 0))  # Tue 31 March, CEST
    assert before.astimezone(BERLIN).hour == after.astimezone(BERLIN).hour == 2
    assert after - before == timedelta(days=7) - timedelta(hours=1)


# Freeze dates.


def test_window_starting_on_a_frozen_date_does_not_open():
    frozen = window(freeze=[date(2026, 12, 22)])  # a Tuesday
    assert not is_open(frozen, berlin(2026, 12, 22, 2, 30))
    assert is_open(frozen, berlin(2026, 12, 15, 2, 30))


def test_release_during_a_freeze_waits_for_the_first_window_after_it():
    frozen = window(freeze=[{"from": "2026-12-20", "to": "2027-01-05"}])  # Dec 22, 29, Jan 5
    assert schedule_release(frozen, berlin(2026, 12, 16, 9, 0)) == berlin(2027, 1, 12, 2, 0)


def test_freeze_range_is_inclusive_in_the_window_time_zone():
    # 2026-12-22 02:00 Berlin is 2026-12-22 01:00 UTC; a freeze ending the 21st does not block it.
    assert is_open(window(freeze=[{"from": "2026-12-01", "to": "2026-12-21"}]),
                   berlin(2026, 12, 22, 2, 30))
    assert not is_open(window(freeze=[{"from": "2026-12-01", "to": "2026-12-22"}]),
                       berlin(2026, 12, 22, 2, 30))


def test_window_that_started_before_a_freeze_stays_open_into_it():
    nightly = window("30 22 * * *", "3h", freeze=[date(2026, 6, 3)])
    assert is_open(nightly, berlin(2026, 6, 3, 0, 30))  # started on the 2nd
    assert not is_open(nightly, berlin(2026, 6, 3, 23, 0))  # started on the frozen 3rd


def test_window_that_never_opens_is_a_spec_error():
    always_frozen = window("0 2 * * *", freeze=[{"from": "2026-01-01", "to": "2040-01-01"}])
    with pytest.raises(SpecError, match="does not open within 8 years"):
        next_opening(always_frozen, berlin(2026, 6, 1, 0, 0))


def test_leap_day_window_is_found_years_ahead():
    leap = window("0 2 29 2 *", "1h")
    assert next_opening(leap, berlin(2026, 6, 1, 0, 0)) == berlin(2028, 2, 29, 2, 0)


# Overrunning: a release is never cut off, the report says how far it ran past the end.


def test_release_finishing_after_the_window_closes_reports_the_overrun():
    assert overrun_seconds(TUESDAYS, berlin(2026, 6, 2, 3, 50), berlin(2026, 6, 2, 4, 5)) == 300


def test_release_finishing_inside_the_window_did_not_overrun():
    assert overrun_seconds(TUESDAYS, berlin(2026, 6, 2, 2, 0), berlin(2026, 6, 2, 3, 0)) == 0


def test_release_started_outside_any_window_did_not_overrun():
    assert overrun_seconds(TUESDAYS, berlin(2026, 6, 3, 2, 0), berlin(2026, 6, 3, 9, 0)) == 0
    assert overrun_seconds(None, berlin(2026, 6, 3, 2, 0), berlin(2026, 6, 3, 9, 0)) == 0


# The model.


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("schedule", "0 2 * *", "not a 5-field cron expression"),
        ("schedule", "0 2 * * * *", "not a 5-field cron expression"),
        ("schedule", "0 25 * * *", "not a valid cron expression: Bad hour"),
        ("timezone", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("duration", "soon", "not a duration"),
        ("duration", 0, "greater than 0"),
        ("freeze", ["next week"], "not a date: 'next week'"),
        ("freeze", [{"from": "2026-12-24", "to": "2026-12-20"}], "is before from"),
    ],
)
def test_invalid_window_is_refused(field, value, message):
    fields = {"schedule": "0 2 * * TUE", "duration": "2h", "timezone": "UTC", field: value}
    with pytest.raises(ValidationError, match=message):
        UpgradeWindow(**fields)


def test_single_freeze_date_is_a_one_day_range():
    frozen = window(freeze=["2026-12-24"]).freeze[0]
    assert (frozen.start, frozen.end) == (date(2026, 12, 24), date(2026, 12, 24))


# Pending releases: the newest version wins.

T0 = datetime(2026, 6, 3, 9, 0, tzinfo=UTC)


def pending(*items: tuple[str, int]) -> PendingReleases:
    queue = PendingReleases()
    for version, minutes in items:
        at = T0 + timedelta(minutes=minutes)
        queue = queue.add(PendingRelease(version, at, "sha256:" + version))
    return queue


def test_highest_semantic_version_wins_over_a_later_request():
    assert pending(("1.3.0", 0), ("1.10.0", 5), ("1.4.0", 10)).newest().version == "1.10.0"


def test_release_beats_its_prerelease():
    assert pending(("1.3.0", 0), ("1.3.0-rc.2", 5)).newest().version == "1.3.0"


def test_later_request_for_the_same_version_wins():
    queue = PendingReleases().add(PendingRelease("1.3.0", T0, "sha256:a"))
    queue = queue.add(PendingRelease("1.3.0", T0 + timedelta(minutes=1), "sha256:b"))
    assert queue.newest().digest == "sha256:b"


def test_latest_request_wins_when_a_version_is_not_semantic():
    assert pending(("2026_06_03", 0), ("1.0.0", 5), ("2026_06_01", 10)).newest().version == (
        "2026_06_01"
    )


def test_no_pending_release_has_no_newest():
    assert PendingReleases().newest() is None and len(pending(("1.0.0", 0))) == 1
