"""Tag policies: which new tags are released, and the semver range grammar behind them."""

import pytest
import semver
from pydantic import ValidationError

from tasks.tag_policy import TagPolicy, admit_tag, in_range, parse_range, parse_version

DEFAULT = TagPolicy()


def v(text: str) -> semver.Version:
    return semver.Version.parse(text)


# Ranges.


@pytest.mark.parametrize(
    "text, inside, outside",
    [
        (">=1.2.0 <2.0.0", ["1.2.0", "1.9.9", "1.3.0-rc.1"], ["1.1.9", "2.0.0", "2.0.0-rc.1"]),
        (">=1.2.0, <2.0.0", ["1.2.0"], ["2.0.0"]),
        (">= 1.2.0  < 2", ["1.5.0"], ["2.0.0"]),
        (">=1.2 <2", ["1.2.0", "1.99.0"], ["1.1.0", "2.0.0"]),
        ("^1.2", ["1.2.0", "1.9.0"], ["1.1.9", "2.0.0"]),
        ("^1.2.3", ["1.2.3", "1.9.0"], ["1.2.2", "2.0.0"]),
        ("^0.3.1", ["0.3.1", "0.3.9"], ["0.3.0", "0.4.0"]),
        ("^0.0.4", ["0.0.4"], ["0.0.5", "0.0.3"]),
        ("^1", ["1.0.0", "1.9.9"], ["2.0.0"]),
        ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
        ("~1.2", ["1.2.0", "1.2.9"], ["1.3.0"]),
        ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
        (">1.2.3 <=1.4.0", ["1.2.4", "1.4.0"], ["1.2.3", "1.4.1"]),
        ("==1.4.0", ["1.4.0"], ["1.4.1"]),
        ("1.4.0", ["1.4.0"], ["1.4.1"]),
        ("^1.2, !=1.4.1", ["1.4.0", "1.4.2"], ["1.4.1"]),
        (">=v1.2.0", ["1.2.0"], ["1.1.0"]),
        ("<2.0.0-rc.2", ["2.0.0-rc.1", "1.9.0"], ["2.0.0-rc.2", "2.0.0"]),
    ],
)
def test_range_holds_versions_inside_and_not_outside(text, inside, outside):
    assert all(in_range(v(x), text) for x in inside)
    assert not any(in_range(v(x), text) for x in outside)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty semver range"),
        ("<=1.2", "<=1.2 needs a full version X.Y.Z"),
        ("==1", "==1 needs a full version"),
        (">1.2", ">1.2 needs a full version"),
        ("1.2.x", "cannot read '1.2.x'"),
        (">=1.0.0 || <0.5.0", "cannot read '||'"),
        ("=>1.0.0", "cannot read '=>1.0.0'"),
        ("^1.2-rc.1", "a prerelease needs a full version"),
    ],
)
def test_unreadable_range_is_refused_naming_the_term(text, message):
    with pytest.raises(ValueError, match=message.replace("|", r"\|").replace("^", r"\^")):
        parse_range(text)


def test_range_error_names_the_spec_field():
    with pytest.raises(ValidationError, match="semver") as e:
        TagPolicy(semver="<=1.2")
    assert e.value.errors()[0]["loc"] == ("semver",)


def test_bad_allow_pattern_is_refused():
    with pytest.raises(ValidationError, match="not a regular expression"):
        TagPolicy(allow="(unclosed")


@pytest.mark.parametrize("tag, version", [("1.2.3", "1.2.3"), ("v1.2.3-rc.1", "1.2.3-rc.1")])
def test_tags_naming_versions_are_read(tag, version):
    assert parse_version(tag) == v(version)


@pytest.mark.parametrize("tag", ["latest", "1.2", "2026_06_03", "abc1234", "1.2.3.4", "v"])
def test_tags_naming_no_version_are_not_versions(tag):
    assert parse_version(tag) is None


# Decisions.


def test_newer_version_is_released():
    d = admit_tag(DEFAULT, "1.3.0", "1.2.0")
    assert d.release and "newer than 1.2.0" in d.reason


def test_first_release_needs_no_current_version():
    assert admit_tag(DEFAULT, "1.0.0", None).release


def test_latest_is_ignored_by_default():
    d = admit_tag(DEFAULT, "latest", "1.2.0")
    assert not d.release and "ignore list" in d.reason


def test_ignore_list_replaces_the_default():
    assert admit_tag(TagPolicy(ignore=["edge"]), "latest", None).release
    assert not admit_tag(TagPolicy(ignore=["edge"]), "edge", None).release


def test_downgrade_is_refused():
    d = admit_tag(DEFAULT, "1.1.0", "1.2.0")
    assert not d.release and "older than the running 1.2.0" in d.reason


def test_same_version_is_refused():
    d = admit_tag(DEFAULT, "1.2.0", "1.2.0")
    assert not d.release and "the same version as" in d.reason


def test_downgrade_is_released_when_allowed():
    assert admit_tag(TagPolicy(allow_downgrade=True), "1.1.0", "1.2.0").release


def test_v_prefix_is_ordered_with_plain_versions():
    assert not admit_tag(DEFAULT, "v1.2.0", "1.2.0").release
    assert admit_tag(DEFAULT, "v1.10.0", "v1.9.0").release


def test_non_semver_tag_fails_a_semver_policy():
    d = admit_tag(TagPolicy(semver=">=1.0.0"), "2026_06_03", "1.2.0")
    assert not d.release and "not a semantic version" in d.reason


def test_version_outside_the_range_is_refused():
    d = admit_tag(TagPolicy(semver="^1.2"), "2.0.0", "1.4.0")
    assert not d.release and "outside the range '^1.2'" in d.reason


def test_prerelease_is_refused_unless_allowed():
    d = admit_tag(DEFAULT, "1.3.0-rc.1", "1.2.0")
    assert not d.release and "prerelease" in d.reason
    assert admit_tag(TagPolicy(prerelease=True), "1.3.0-rc.1", "1.2.0").release


def test_release_after_its_prerelease_is_newer():
    assert admit_tag(TagPolicy(prerelease=True), "1.3.0", "1.3.0-rc.1").release


def test_allow_pattern_must_match_the_whole_tag():
    policy = TagPolicy(allow=r"\d+\.\d+\.\d+")
    assert admit_tag(policy, "1.3.0", None).release
    d = admit_tag(policy, "1.3.0-hotfix", None)
    assert not d.release and "does not match the allow pattern" in d.reason


def test_non_semver_tags_without_a_range_are_released_but_not_the_running_one():
    policy = TagPolicy(allow=r"\d{4}_\d{2}_\d{2}")
    d = admit_tag(policy, "2026_06_03", "2026_06_01")
    assert d.release and "only semantic versions are" in d.reason
    assert not admit_tag(policy, "2026_06_01", "2026_06_01").release
