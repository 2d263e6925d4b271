"""One release per app at a time: a second release of the same app waits for the first."""

from __future__ import annotations

import time

import pytest

from tests.helpers import record_of, start_release

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("demo")]


def test_second_release_of_an_app_waits_and_starts_from_the_first_ones_result():
    run = int(time.time()) % 1_000_000
    versions = [f"1.6.0-c{run}", f"1.6.1-c{run}"]
    started = []
    for version in versions:
        started.append(start_release(version))
        time.sleep(1)
    records = []
    for process in started:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        records.append(record_of(out, err))
    assert [r["outcome"] for r in records] == ["promoted", "promoted"]
    # Had both read what runs before either deployed, each would name the same version
    # as its previous one. Serialised, the later one starts from the earlier one's result.
    first, second = sorted(records, key=lambda r: r["previous_version"] in versions)
    assert second["previous_version"] == first["version"]
    assert first["previous_version"] not in versions
