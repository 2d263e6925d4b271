"""Tag policies: whether a tag that appeared in a registry is released at all.

The webhook receiver and the poller call `admit_tag` for every new tag of an app, with the
version the app runs now; only a tag it releases starts a release run, which calls it again
under the app's lock.

Versions are semantic versions (semver.org), with an optional leading `v` (`v1.2.3`): image
tags cannot carry `+build` metadata, so precedence is major, minor, patch, then prerelease.

The `semver` range grammar (the `semver` package has no range matcher, so it is parsed here):

- comparators separated by spaces and/or commas, all of which must hold:
  `>=1.2.0 <2.0.0`, `>=1.2.0, !=1.4.1`;
- `>=`, `>`, `<=`, `<`, `==` (or `=`), `!=` followed by a version; `>=` and `<` also take
  `1` or `1.2` (read as `1.0.0`, `1.2.0`, which is what npm means by them); the others need a
  full `X.Y.Z`, because `<=1.2` or `==1.2` would mean "any 1.2.x" elsewhere;
- `^X.Y.Z`: the same leftmost non-zero part (`^1.2` = `>=1.2.0 <2.0.0`,
  `^0.3.1` = `>=0.3.1 <0.4.0`, `^0.0.4` = `>=0.0.4 <0.0.5`);
- `~X.Y.Z`: the same minor (`~1.2.3` = `>=1.2.3 <1.3.0`; `~1` = `>=1.0.0 <2.0.0`);
- a bare version is `==` that version.

No `||`, no `x` wildcards, no hyphen ranges. Prereleases are compared by semver precedence
(`1.3.0-rc.1` is inside `>=1.2.0 <2.0.0`), except that an upper bound `<X.Y.Z` also keeps out
X.Y.Z's own prereleases (`2.0.0-rc.1` is not inside `^1.2`). Whether prereleases are released
at all is the policy's `prerelease` switch.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

import semver
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.durations import Seconds

_OPERATORS: dict[str, Callable[[semver.Version, semver.Version], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
}
_PARTIAL_ALLOWED = frozenset({">=", "<", "^", "~"})
_COMPARATOR = re.compile(r"(>=|<=|==|!=|>|<|=|\^|~)?\s*v?(\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.-]+)?)$")


def parse_version(tag: str) -> semver.Version | None:
    """The semantic version a tag names (`1.2.3`, `v1.2.3-rc.1`), or None if it names none."""
    text = tag[1:] if tag[:1] in ("v", "V") else tag
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Comparator:
    """One condition of a range: `op` applied to (candidate, version)."""

    op: str
    version: semver.Version

    def allows(self, candidate: semver.Version) -> bool:
        if self.op == "<" and not self.version.prerelease and candidate.prerelease:
            # `<2.0.0` (and `^1.2`) means "before 2", not "2.0.0-rc.1 too".
            return candidate.finalize_version() < self.version
        return _OPERATORS[self.op](candidate, self.version)

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


def _expand(op: str, text: str, whole: str) -> list[Comparator]:
    """Comparators for one term; `^`/`~` become a lower and an upper bound."""
    core, _, prerelease = text.partition("-")
    parts = [int(p) for p in core.split(".")]
    if len(parts) < 3 and op not in _PARTIAL_ALLOWED:
        raise ValueError(
            f"{whole!r}: {op}{text} needs a full version X.Y.Z "
            f"(only >=, <, ^ and ~ take a shorter one)"
        )
    if len(parts) < 3 and prerelease:
        raise ValueError(f"{whole!r}: a prerelease needs a full version X.Y.Z, got {text!r}")
    low = semver.Version(*(parts + [0, 0])[:3], prerelease=prerelease or None)
    if op == "^":
        if low.major or len(parts) == 1:
            high = low.bump_major()
        elif low.minor or len(parts) == 2:
            high = low.bump_minor()
        else:
            high = low.bump_patch()
        return [Comparator(">=", low), Comparator("<", high)]
    if op == "~":
        high = low.bump_major() if len(parts) == 1 else low.bump_minor()
        return [Comparator(">=", low), Comparator("<", high)]
    return [Comparator(op, low)]


@lru_cache(maxsize=256)
def parse_range(text: str) -> tuple[Comparator, ...]:
    """Parse a range of the grammar above; raises ValueError naming the term it cannot read."""
    terms = [t for t in re.split(r"[\s,]+", text.strip()) if t]
    # `>= 1.2.0` (a space after the operator) is one term, not two.
    joined: list[str] = []
    for term in terms:
        if joined and joined[-1] in _OPERATORS.keys() | {"^", "~"}:
            joined[-1] += term
        else:
            joined.append(term)
    if not joined:
        raise ValueError("an empty semver range; leave `semver` out to allow every version")
    comparators: list[Comparator] = []
    for term in joined:
        match = _COMPARATOR.match(term)
        if not match:
            raise ValueError(
                f"{text!r}: cannot read {term!r} (use e.g. '>=1.2.0 <2.0.0', '^1.2', '~1.4.0')"
            )
        comparators += _expand(match.group(1) or "==", match.group(2), text)
    return tuple(comparators)


def in_range(version: semver.Version, text: str) -> bool:
    """Whether `version` satisfies every comparator of the range `text`."""
    return all(c.allows(version) for c in parse_range(text))


class TagPolicy(BaseModel):
    """The spec's `tag_policy`: which new tags of an app are released (see `admit_tag`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    semver: str | None = None
    """A version range (module docstring); when given, a tag must be a version inside it."""
    allow: str | None = None
    """A regular expression the whole tag must match."""
    ignore: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["latest"])
    """Tags never released, compared exactly."""
    allow_downgrade: bool = False
    """Release a version that is not newer than the running one."""
    prerelease: bool = False
    """Release semver prereleases (`1.3.0-rc.1`)."""
    settle: Annotated[Seconds, Field(ge=0)] = 10.0
    """How long a triggered release waits for a newer tag before it starts, so that a burst
    of pushes releases only the newest (pushes 1 s apart start one release, not two)."""

    @field_validator("semver")
    @classmethod
    def _readable_range(cls, value: str | None) -> str | None:
        if value is not None:
            parse_range(value)
        return value

    @field_validator("allow")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"not a regular expression: {value!r} ({e})") from None
        return value


@dataclass(frozen=True)
class TagDecision:
    """Whether a tag is released, and why (shown in the trigger's log and event)."""

    release: bool
    reason: str


def admit_tag(policy: TagPolicy, tag: str, current_version: str | None) -> TagDecision:
    """Whether `tag` is released for an app that runs `current_version` (None: nothing yet).

    Called by the triggers for every new tag. The checks, in order: ignored tags, the `allow`
    pattern, semver (when the policy has a range, or refuses prereleases), then the downgrade
    check. The downgrade check needs both tags to be versions; for tags that are not, only the
    running tag itself is refused, since nothing else tells their order.
    """
    if tag in policy.ignore:
        return TagDecision(False, f"tag {tag!r} is in the policy's ignore list")
    if policy.allow is not None and not re.fullmatch(policy.allow, tag):
        return TagDecision(False, f"tag {tag!r} does not match the allow pattern {policy.allow!r}")
    version = parse_version(tag)
    if version is None and policy.semver is not None:
        return TagDecision(
            False, f"tag {tag!r} is not a semantic version (X.Y.Z), which the range "
            f"{policy.semver!r} needs"
        )
    if version is not None and version.prerelease and not policy.prerelease:
        return TagDecision(False, f"{tag} is a prerelease and the policy releases none")
    if version is not None and policy.semver is not None and not in_range(version, policy.semver):
        return TagDecision(False, f"{tag} is outside the range {policy.semver!r}")
    if current_version is None or policy.allow_downgrade:
        return TagDecision(True, f"{tag} passes the tag policy")
    current = parse_version(current_version)
    if version is not None and current is not None:
        if version <= current:
            word = "the same version as" if version == current else "older than"
            return TagDecision(False, f"{tag} is {word} the running {current_version} "
                                      "(allow_downgrade is false)")
        return TagDecision(True, f"{tag} passes the tag policy and is newer than "
                                 f"{current_version}")
    if tag == current_version:
        return TagDecision(False, f"{tag} is the version running now")
    return TagDecision(
        True, f"{tag} passes the tag policy (not ordered against the running "
        f"{current_version}: only semantic versions are)"
    )
