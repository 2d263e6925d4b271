"""Which tag the poller announces: pure, over tag lists (tests/e2e/test_triggers.py polls a
real registry through Prefect)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.poller import memory_name, newest_candidate
from tasks.spec import parse_spec
from tests.helpers import DEMO_SPEC


def spec_with(policy: dict):
    data = yaml.safe_load(Path(DEMO_SPEC).read_text())
    data["tag_policy"] = policy
    return parse_spec(data, Path(DEMO_SPEC).parent, "release.yaml")


TAGS = ["latest", "nightly", "1.2.0", "1.10.0", "1.9.3", "2.0.0-rc.1", "v1.11.0", "0.9.0"]


@pytest.mark.parametrize("policy, running, expected", [
    ({}, None, "v1.11.0"),                        # semver order, not string order
    ({}, "1.11.0", None),                          # nothing newer than what runs
    ({"semver": "<1.10.0"}, "1.2.0", "1.9.3"),
    ({"prerelease": True}, "1.11.0", "2.0.0-rc.1"),
    ({"allow": r"\d+\.\d+\.\d+"}, None, "1.10.0"),  # the `v` tag does not match
])
def test_newest_tag_the_policy_releases_is_the_candidate(policy, running, expected):
    assert newest_candidate(spec_with(policy), TAGS, running) == expected


def test_tags_that_are_not_versions_are_never_candidates():
    assert newest_candidate(spec_with({}), ["latest", "nightly", "main-4f2a"], None) is None


def test_memory_name_is_a_valid_variable_name():
    assert memory_name("Shop-EU.1") == "ferryman_poller_shop_eu_1"


def test_fifty_remembered_announcements_fit_in_a_prefect_variable():
    import json
    import uuid

    from prefect.types import MAX_VARIABLE_VALUE_LENGTH

    from flows.poller import REMEMBERED

    value = [str(uuid.uuid4()) for _ in range(REMEMBERED)]
    assert len(json.dumps(value)) < MAX_VARIABLE_VALUE_LENGTH
