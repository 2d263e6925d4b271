"""Property: no spec, however broken, crashes the loader. `parse_spec` on generated data
returns a valid spec or raises SpecError naming a field path, and nothing else."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tasks.errors import SpecError
from tasks.spec import ReleaseSpec, parse_spec
from tests.helpers import DEMO_SPEC, ROOT

BASE = Path(DEMO_SPEC).parent
PROBLEM = re.compile(r"  (\(top level\)|[A-Za-z_][\w-]*|\[)[^\n]*: \S")
"""A problem line: two spaces, the field path (or `(top level)`), a colon, the reason."""


def demo() -> dict:
    data = yaml.safe_load(Path(DEMO_SPEC).read_text())
    data["image"]["context"] = str(ROOT / "examples" / "demo-app")
    data["target"]["stack_file"] = str(BASE / "stack.yml")
    return data


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in `node`, parents before children."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*prefix, i))
    return found


DEMO_PATHS = paths(demo())

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(max_size=30)
    | st.sampled_from([
        "nan", "inf", "-inf", ".nan", "1e999", "-1", "0", "", "1m30s", "500ms", "-5s",
        "${version}", "$", "a" * 300, "\x00", "../../etc", "/", "1.0.0", "latest",
        "http://", "127.0.0.1:5000", "Europe/Berlin", "0 2 * * TUE", "sha256:",
    ])
)
yaml_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12) | st.integers(), children, max_size=4),
    max_leaves=20,
)


def _set(data: dict, path: tuple, value: Any) -> None:
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()


SPECIAL = st.sampled_from([
    float("nan"), float("inf"), -float("inf"), 10**400, -1, 0, True, None, [], {},
    "nan", ".inf", "1e999", "a" * 300, "x/" * 3000, "\x00", "\n", "${nope}",
])
"""Values that broke, or could break, a loader: non-finite numbers, huge ones, odd paths."""


@st.composite
def near_valid(draw) -> dict:
    """The demo spec with one to three fields deleted, replaced, or given a stray key."""
    data = demo()
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(data)))
        how = draw(st.sampled_from(["delete", "replace", "replace", "stray"]))
        if how == "delete":
            _set(data, path, _DELETE)
        elif how == "replace":
            _set(data, path, draw(st.one_of(SPECIAL, scalars, yaml_like)))
        else:
            parent = path[:-1]
            node = data
            for key in parent:
                node = node[key]
            if isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=12))] = draw(scalars)
    return data


def check(data: object) -> None:
    try:
        spec = parse_spec(data, BASE, "gen.yaml")
    except SpecError as e:
        lines = str(e).splitlines()
        assert lines[0] == "gen.yaml: invalid release spec", str(e)
        assert len(lines) > 1 and PROBLEM.match(lines[1]), str(e)
    else:
        assert isinstance(spec, ReleaseSpec)
        for metric in spec.analysis.metrics:
            for bound in (metric.threshold.min, metric.threshold.max):
                assert bound is None or math.isfinite(bound)
        assert math.isfinite(spec.analysis.interval)


PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(yaml_like)
def test_arbitrary_yaml_data_never_crashes_the_loader(data):
    check(data)


def _changed(path: tuple, value: Any) -> dict:
    data = demo()
    _set(data, path, value)
    return data


@PROPERTY
@given(near_valid())
@example(_changed(("image", "context"), "a" * 300))  # found: pathlib raised OSError
@example(_changed(("image", "dockerfile"), "a" * 300))  # found: the same
@example(_changed(("analysis", "metrics", 0, "threshold", "max"), float("nan")))
@example(_changed(("analysis", "interval"), ".inf"))
@example(_changed(("analysis", "initial_delay"), 10**400))  # found: float() overflowed
@example(_changed(("analysis", "metrics", 0, "threshold", "max"), 10**400))
@example(_changed(("target", "service"), "nosuchservice"))
@example(_changed(("analysis", "metrics", 0, "bad key\nwith newline"), 1))
def test_near_valid_spec_is_valid_or_refused_naming_a_field(data):
    check(data)


def test_the_unmutated_demo_spec_is_valid():
    assert isinstance(parse_spec(demo(), BASE, "gen.yaml"), ReleaseSpec)
    assert ("analysis", "metrics", 0, "threshold", "max") in DEMO_PATHS
