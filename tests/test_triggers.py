"""What a triggered release holds against earlier runs, decided without a Prefect server (the
queries themselves run on the real one in tests/e2e/test_triggers.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows import release
from flows.release import Request, _skip_reason
from flows.triggers import digest_tag, earlier_release_tags, version_tag
from tasks.spec import load_spec
from tasks.targets import Version
from tests.helpers import DEMO_SPEC

DIGEST = "sha256:" + "c" * 64


def test_a_push_with_a_digest_is_held_against_that_image():
    assert earlier_release_tags("demo", "1.5.0", DIGEST) == ["app:demo", digest_tag(DIGEST)]


def test_a_push_without_a_digest_is_held_against_that_version():
    assert earlier_release_tags("demo", "1.5.0", None) == ["app:demo", "version:1.5.0"]
    assert version_tag("1.5.0") == "version:1.5.0"


def request(trigger: str, digest: str | None) -> Request:
    return Request(version="1.5.0", digest=digest, trigger=trigger, requested_by="a test",
                   dry_run=False, deferred=False, build_args={},
                   admitted_at=datetime.now(UTC))


@pytest.fixture()
def earlier_runs(monkeypatch):
    """Stands in for Prefect's run history: the runs `released_before` finds, by its tags."""
    runs: dict[tuple[str, ...], SimpleNamespace] = {}
    asked: list[tuple[str, ...]] = []

    def released_before(app, version, digest):
        tags = tuple(earlier_release_tags(app, version, digest))
        asked.append(tags)
        return runs.get(tags)

    monkeypatch.setattr(release, "released_before", released_before)
    monkeypatch.setattr(release, "newer_request", lambda app, version: None)
    return runs, asked


def rolled_back_run(*tags: str) -> dict:
    run = SimpleNamespace(name="demo 1.4.0 -> 1.5.0", state=SimpleNamespace(name="RolledBack"))
    return {("app:demo", *tags): run}


@pytest.fixture(scope="module")
def spec():
    return load_spec(Path(DEMO_SPEC))


RUNNING = Version("1.4.0", "127.0.0.1:5000/ferryman/demo:1.4.0@sha256:" + "d" * 64)


def test_docker_hub_redelivery_of_a_rolled_back_tag_is_skipped(spec, earlier_runs):
    runs, _ = earlier_runs
    runs.update(rolled_back_run("version:1.5.0"))
    reason = _skip_reason(spec, request("webhook", None), RUNNING)
    assert reason == ("1.5.0 (the sender gave no digest) was released before, "
                      "by run demo 1.4.0 -> 1.5.0 (RolledBack)")


def test_docker_hub_push_of_a_new_tag_is_released(spec, earlier_runs):
    runs, asked = earlier_runs
    runs.update(rolled_back_run("version:1.4.9"))
    assert _skip_reason(spec, request("webhook", None), RUNNING) is None
    assert asked == [("app:demo", "version:1.5.0")]


def test_push_with_a_digest_is_held_against_the_image_not_the_tag(spec, earlier_runs):
    """A registry that sends digests: the same tag pushed again as a new image is released."""
    runs, asked = earlier_runs
    runs.update(rolled_back_run("version:1.5.0"))
    assert _skip_reason(spec, request("webhook", DIGEST), RUNNING) is None
    runs.update(rolled_back_run(digest_tag(DIGEST)))
    assert "was released before" in _skip_reason(spec, request("poller", DIGEST), RUNNING)
    assert asked == [("app:demo", digest_tag(DIGEST))] * 2


def test_manual_release_of_a_rolled_back_version_is_not_held(spec, earlier_runs):
    runs, asked = earlier_runs
    runs.update(rolled_back_run("version:1.5.0"))
    assert _skip_reason(spec, request("manual", None), RUNNING) is None
    assert asked == []
