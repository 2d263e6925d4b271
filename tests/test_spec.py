"""Release spec validation: every problem is named by its field path, before anything runs."""

from pathlib import Path

import pytest
import yaml

from tasks.durations import parse_duration
from tasks.errors import SpecError
from tasks.spec import (
    STRATEGIES,
    find_spec,
    load_spec,
    parse_spec,
    validate_digest,
    validate_version,
)
from tasks.strategies import MODULES
from tasks.strategy_kinds import STRATEGY_KINDS
from tests.helpers import changed

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "deployments" / "demo" / "release.yaml"


def demo_data() -> dict:
    return yaml.safe_load(DEMO.read_text())


def parse(data: dict):
    return parse_spec(data, DEMO.parent, "test.yaml")


def with_change(path: str, value):
    return changed(demo_data(), path, value)


def error_of(data) -> str:
    with pytest.raises(SpecError) as e:
        parse(data)
    return str(e.value)


def test_demo_spec_is_valid():
    spec = load_spec(DEMO)
    assert spec.app == "demo" and spec.analysis.interval == 4.0
    assert spec.image.context == (ROOT / "examples" / "demo-app").resolve()
    assert spec.source == DEMO
    assert spec.router.kind is None  # the platform's default router


def test_a_spec_may_name_the_platforms_router():
    assert parse(with_change("router", {"kind": "replicas"})).router.kind == "replicas"


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("app", "Demo_App", "app: String should match pattern"),
        ("analysis.interval", "soon", "analysis.interval: not a duration: 'soon'"),
        ("analysis.count", 0, "analysis.count: Input should be greater than or equal to 1"),
        ("analysis.metrics.0.threshold", {}, "analysis.metrics[0].threshold: give min, max"),
        ("analysis.metrics.0.threshold", {"min": 2, "max": 1},
         "analysis.metrics[0].threshold: min 2.0 is above max 1.0"),
        ("analysis.metrics.0.query", "rate(x{v=\"${versoin}\"}[1m])",
         "analysis.metrics[0].query: unknown placeholder(s) ['versoin']"),
        ("analysis.on_inconclusive", "ignore", "analysis.on_inconclusive: Input should be"),
        ("analysis.metrics", [], "analysis.metrics: List should have at least 1 item"),
        ("strategy", "big-bang",
             "strategy.kind: 'big-bang' is not one of 'rolling', 'blue-green', 'canary'"),
            ("strategy", {"kind": "canary", "steps": [{"weight": 10}, {"analysis": {}}]},
             "strategy.steps: weight 10% cannot be set by replica counts beside 2 stable"),
            ("strategy", {"kind": "canary", "steps": [{"weight": 30}]},
             "strategy.steps: no analysis step"),
        ("target.kind", "nomad", "target.kind: 'nomad' is not one of 'swarm', 'kubernetes'"),
        ("router", {"kind": "mesh"}, "router: no router 'mesh' on swarm (known: replicas)"),
        ("analysis.provider", {"kind": "graphite"},
         "analysis.provider.kind: 'graphite' is not one of 'prometheus'"),
        ("analysis.provider", {"kind": "prometheus", "address": "ftp://x"},
         "analysis.provider.address: String should match pattern"),
        ("analysis.query_timeout", 5,
         "analysis: give Prometheus' address and time-out under `provider:`"),
        ("router", {"weights": 1}, "router.weights: Extra inputs are not permitted"),
        ("target.stack_file", "missing.yml", "target.stack_file: stack file"),
        ("image.context", "nowhere", "image.context: build context"),
        ("registry.url", "http://x", "registry.url: String should match pattern"),
        ("analysis.surprise", 1, "analysis.surprise: Extra inputs are not permitted"),
        ("analysis", KeyError, "analysis: Field required"),
    ],
)
def test_invalid_spec_names_the_field(path, value, message):
    assert message in error_of(with_change(path, value))


def test_every_problem_is_reported_at_once():
    data = with_change("analysis.count", -1)
    data["app"] = "UPPER"
    text = error_of(data)
    assert "analysis.count" in text and "app:" in text


def test_duplicate_metric_names_are_refused():
    data = demo_data()
    data["analysis"]["metrics"].append(dict(data["analysis"]["metrics"][0]))
    assert "repeated: ['error-rate']" in error_of(data)


def test_not_a_mapping_is_refused():
    with pytest.raises(SpecError, match="a YAML mapping"):
        parse_spec(["app"], DEMO.parent, "test.yaml")


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(SpecError, match="cannot read release spec"):
        load_spec(tmp_path / "nope.yaml")


def test_bad_yaml_is_named(tmp_path):
    bad = tmp_path / "release.yaml"
    bad.write_text("app: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


@pytest.mark.parametrize("version", ["1.2.0", "v2", "1.0.0-rc.1", "2026_11_26"])
def test_valid_versions(version):
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["", "-1", ".1", "1.0 beta", "a" * 129, "1/2"])
def test_invalid_versions_are_refused(version):
    with pytest.raises(SpecError, match="not a valid image tag"):
        validate_version(version)


@pytest.mark.parametrize(
    "text, seconds",
    [("90", 90), (1.5, 1.5), ("500ms", 0.5), ("1m30s", 90), ("2h", 7200), (0, 0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1 m", "s", "-5", "5x", True, None])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), float("inf"), "1e999",
                                   10**400])
def test_duration_that_is_not_finite_is_refused_by_name(value):
    with pytest.raises(ValueError, match="finite number of seconds"):
        parse_duration(value)


@pytest.mark.parametrize("path, value", [
    ("analysis.interval", float("nan")),
    ("analysis.initial_delay", float("inf")),
    ("analysis.interval", "nan"),
])
def test_spec_duration_that_is_not_finite_names_its_field(path, value):
    assert f"{path}: a duration must be a finite number" in error_of(with_change(path, value))


@pytest.mark.parametrize("bound", ["min", "max"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "nan"])
def test_threshold_that_is_not_finite_names_its_field(bound, value):
    message = error_of(with_change(f"analysis.metrics.0.threshold.{bound}", value))
    assert f"analysis.metrics[0].threshold.{bound}: Input should be a finite number" in message


def test_spec_without_window_or_tag_policy_releases_any_time_and_ignores_latest():
    spec = parse(demo_data())
    assert spec.window is None and spec.tag_policy.ignore == ["latest"]


def test_window_and_tag_policy_are_read_from_the_spec():
    data = demo_data()
    data["window"] = yaml.safe_load(
        "{schedule: '0 2 * * TUE', duration: 2h, timezone: Europe/Berlin,"
        " freeze: [2026-12-24, {from: 2026-12-28, to: 2027-01-02}]}"
    )
    data["tag_policy"] = {"semver": ">=1.2.0 <2.0.0", "allow_downgrade": False}
    spec = parse(data)
    assert spec.window.duration == 7200.0 and spec.window.timezone == "Europe/Berlin"
    assert [(f.start.isoformat(), f.end.isoformat()) for f in spec.window.freeze] == [
        ("2026-12-24", "2026-12-24"), ("2026-12-28", "2027-01-02")]
    assert spec.tag_policy.semver == ">=1.2.0 <2.0.0"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("window", {"schedule": "0 2 * * TUE", "duration": "2h", "timezone": "Berlin"},
         "window.timezone: unknown time zone 'Berlin'"),
        ("window", {"schedule": "every tuesday", "duration": "2h", "timezone": "UTC"},
         "window.schedule: 'every tuesday' is not a 5-field cron expression"),
        ("window", {"schedule": "0 2 * * TUE", "duration": "long", "timezone": "UTC"},
         "window.duration: not a duration: 'long'"),
        ("window", {"schedule": "0 2 * * TUE", "duration": "2h", "timezone": "UTC",
                    "freeze": ["2026-12-24", {"from": "2026-12-28"}]},
         "window.freeze[1].to: Field required"),
        ("window", {"schedule": "0 2 * * TUE", "timezone": "UTC"},
         "window.duration: Field required"),
        ("tag_policy", {"semver": "<=2"}, "tag_policy.semver: '<=2': <=2 needs a full version"),
        ("tag_policy", {"allow": "v("}, "tag_policy.allow: not a regular expression"),
        ("tag_policy", {"downgrade": True}, "tag_policy.downgrade: Extra inputs are not permitted"),
    ],
)
def test_invalid_window_or_tag_policy_names_the_field(key, value, message):
    data = demo_data()
    data[key] = value
    assert message in error_of(data)


def write_app(folder: Path, name: str, app: str) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / "release.yaml").write_text(yaml.safe_dump({"app": app}))


def test_spec_is_found_by_app_name(tmp_path):
    write_app(tmp_path, "shop", "shop")
    write_app(tmp_path, "billing-service", "billing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "release.yaml").write_text("app: [unclosed")
    assert find_spec("billing", tmp_path) == (tmp_path / "billing-service" / "release.yaml")


def test_unknown_app_names_the_apps_there_are(tmp_path):
    write_app(tmp_path, "shop", "shop")
    with pytest.raises(SpecError, match=r"no release spec for app 'demo' .*apps there: shop"):
        find_spec("demo", tmp_path)


def test_app_with_two_specs_is_refused(tmp_path):
    write_app(tmp_path, "a", "shop")
    write_app(tmp_path, "b", "shop")
    with pytest.raises(SpecError, match="app 'shop' has several specs"):
        find_spec("shop", tmp_path)


def test_digest_must_be_a_sha256_digest():
    assert validate_digest("sha256:" + "a" * 64)
    with pytest.raises(SpecError, match="'sha256:abc' is not an image digest"):
        validate_digest("sha256:abc")


def test_every_strategy_kind_has_a_model_and_a_module():
    assert tuple(STRATEGIES) == STRATEGY_KINDS == tuple(MODULES)
    assert all(STRATEGIES[kind]().kind == kind for kind in STRATEGY_KINDS)


def test_a_spec_of_before_provider_still_loads_as_prometheus():
    data = demo_data()
    del data["analysis"]["provider"]
    data["analysis"] |= {"prometheus": "http://prometheus.example:9090", "query_timeout": "3s"}
    provider = parse(data).analysis.provider
    assert (provider.kind, provider.address, provider.query_timeout) == (
        "prometheus", "http://prometheus.example:9090", 3.0)
    del data["analysis"]["query_timeout"]
    assert parse(data).analysis.provider.query_timeout == 10.0
