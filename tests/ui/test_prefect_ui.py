"""What the Prefect UI shows of a promoted and a rolled-back release, in a real browser.

Releases the demo app twice through the `ferryman` CLI on the local stack, then drives
Debian's headless Chromium (Playwright) through the Prefect UI a person gets at
http://127.0.0.1:4200: the runs page, the flow run, its task runs and its artifacts.
Full-page screenshots of every page go to test-output/ui/; the README's pictures in
docs/screenshots/ are copies of two of them.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect, sync_playwright

from tasks.spec import load_spec
from tests.helpers import DEMO_SPEC, ROOT
from tests.helpers import release as cli_release

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("demo")]

RUN = f"u{int(time.time()) % 1_000_000}"
UI = "http://127.0.0.1:4200"
SHOTS = ROOT / "test-output" / "ui"
CHROMIUM = "/usr/bin/chromium"
# Headless, no sandbox (root in a container), and nothing that calls home: the browser only
# ever talks to the Prefect server on 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass(frozen=True)
class Release:
    """A release as the CLI recorded it, and the flow run name the UI lists it by."""

    record: dict

    @property
    def run_name(self) -> str:
        return f"demo {self.record['previous_version'] or 'new'} -> {self.record['version']}"


def release(version: str, *build_args: str) -> tuple[int, Release]:
    """Run `ferryman release --json`; return the exit code and the release."""
    code, record = cli_release(version, *build_args)
    return code, Release(record)


@pytest.fixture(scope="module")
def releases() -> dict[str, Release]:
    """A good version, promoted, then a bad one (half its answers 500), rolled back to it."""
    code, good = release(f"2.0.0-{RUN}-ui-ok")
    assert (code, good.record["outcome"]) == (0, "promoted"), good.record["reason"]
    code, bad = release(f"2.1.0-{RUN}-ui-bad", "FAIL_RATE=0.5")
    assert (code, bad.record["outcome"]) == (3, "rolled_back"), bad.record["reason"]
    return {"promoted": good, "rolled-back": bad}


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium with a fresh profile: no saved UI preference, so the default UI."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/bootstrap does)")
    expect.set_options(timeout=20_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 1000},
        )
        context.set_default_timeout(20_000)
        yield context
        context.close()


@pytest.fixture
def page(browser_context):
    """A new tab; the UI's script errors and console errors are printed for a failing test."""
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    yield page
    page.close()
    print("\n".join(errors))


def shoot(page, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path}: an empty page?"
    return path


def value_text(value: float | None) -> str:
    """A measured value as the analysis table and the report print it."""
    return "—" if value is None else f"{value:.4g}"


def open_runs_page(page, tries: int = 3) -> None:
    """The UI's front page, then its Runs link. Docker adds and removes network interfaces
    while the tests beside this one run containers, and Chromium aborts the requests in
    flight when it sees one (net::ERR_NETWORK_CHANGED), leaving the page half drawn: it is
    loaded again, up to `tries` times, before that counts as a failure."""
    for attempt in range(1, tries + 1):
        page.goto(f"{UI}/")
        try:
            page.get_by_role("link", name="Runs", exact=True).click()
            return
        except PlaywrightTimeoutError:
            if attempt == tries:
                raise


def walk_through_release(page, run: Release, state: str, slug: str) -> None:
    """From the UI's front page to the run, its task runs, its report and its analysis table,
    asserting on each page what a person looks for, with a screenshot of each."""
    rec = run.record
    name = run.run_name

    # The runs page: the run, found by its name, with its state.
    open_runs_page(page)
    page.get_by_placeholder("Search by flow run name").fill(name)
    link = page.get_by_role("link", name=name, exact=True)
    run_cards = page.locator("[data-slot=card]:has(a[href*='/runs/flow-run/'])")
    expect(run_cards).to_have_count(1)  # the search has been applied: this run alone is listed
    card = run_cards.filter(has=link)
    expect(card).to_be_visible()
    expect(card.get_by_text(state, exact=True)).to_be_visible()
    shoot(page, f"{slug}-1-runs")

    # The flow run: its name and state in the header, one task run per step.
    link.click()
    expect(page).to_have_url(re.compile(r"/runs/flow-run/[0-9a-f-]+"))
    # The runs page has tabs too (Flow Runs, Task Runs) and stays until the run's page is
    # rendered: its own tab list is the one with Artifacts.
    tabs = page.get_by_role("tablist").filter(has=page.get_by_role("tab", name="Artifacts"))
    expect(tabs).to_be_visible()
    header = page.get_by_role("main").get_by_role("navigation", name="breadcrumb").first
    expect(header).to_contain_text(name)
    expect(page.get_by_text(state, exact=True).first).to_be_visible()
    tabs.get_by_role("tab", name="Task Runs").click()
    steps = [f"package {rec['version']}", f"push {rec['version']}",
             f"mark the release of {rec['version']}", f"deploy {rec['version']} as stable",
             f"verify {rec['version']} rolling"]
    if state == "Completed":
        steps.append(f"promote {rec['version']}")
    else:  # the restored version is verified again after the rollback
        steps += [f"roll back to {rec['previous_version']}",
                  f"verify {rec['previous_version']} restored"]
    task_runs = page.get_by_role("tabpanel", name="Task Runs").locator("[data-slot=card]")
    for step in steps:
        # A task run card names its flow run too: while the list loads, another run's
        # `verify <version>` may show for a moment.
        task_run = task_runs.filter(has=page.get_by_role("link", name=name, exact=True)).filter(
            has=page.get_by_role("link", name=step, exact=True)
        )
        expect(task_run).to_have_count(1)
        expect(task_run.get_by_text("Completed", exact=True)).to_be_visible()
    shoot(page, f"{slug}-2-task-runs")

    # Its artifacts: the release report, the analysis table, the analysis progress.
    tabs.get_by_role("tab", name="Artifacts").click()
    for key in ("demo-release-report", "demo-analysis"):
        expect(artifact_card(page, key)).to_be_visible()
    # One progress artifact per analysis: the new version's, and the restored one's, if any.
    progress = artifact_card(page, "demo-analysis-progress", f"analysis of demo {rec['version']}")
    expect(progress).to_be_visible()
    shoot(page, f"{slug}-3-artifacts")

    # The release report: what ran before, what runs now, the decision and every measurement.
    artifact_card(page, "demo-release-report").click()
    report = page.get_by_test_id("markdown-display")  # the rendered markdown, not the raw text
    heading = f"demo: {name.removeprefix('demo ')}"
    expect(report.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(report.get_by_text(f"Outcome: {rec['outcome']}", exact=True)).to_be_visible()
    if rec["digest"]:
        expect(report.get_by_text(rec["digest"], exact=True)).to_be_visible()
    expect_measurement_rows(page, report, rec, with_version=False)
    shoot(page, f"{slug}-4-report")

    # The analysis table: one row per measurement, with the measured value and its phase.
    page.go_back()
    tabs.get_by_role("tab", name="Artifacts").click()
    artifact_card(page, "demo-analysis").click()
    expect(page.get_by_role("columnheader", name="phase", exact=True)).to_be_visible()
    expect_measurement_rows(page, page.get_by_role("table"), rec, with_version=True)
    shoot(page, f"{slug}-5-analysis")


def artifact_card(page, key: str, description: str | None = None):
    """The link card of one of the run's artifacts with this key (and this description)."""
    cards = page.get_by_role("link").filter(
        has=page.get_by_role("heading", name=key, exact=True), has_text=description
    )
    return cards.first


def expect_measurement_rows(page, scope, rec: dict, with_version: bool) -> None:
    """Each metric's last measurement of the new version is a table row (within `scope`)
    with its number, value and phase."""
    last = {m["metric"]: m for m in rec["measurements"]}
    assert set(last) == {"error-rate", "latency-p95"}, rec["measurements"]
    for m in last.values():
        row = scope.get_by_role("row")
        cells = [m["metric"], str(m["index"] + 1), value_text(m["value"]), m["phase"]]
        if with_version:
            cells.append(m["version"])
        for text in cells:
            row = row.filter(has=page.get_by_role("cell", name=text, exact=True))
        expect(row.first).to_be_visible()


def check(page, run: Release, state: str, slug: str) -> None:
    """Walk through the release; on a failure, a screenshot of where it stopped."""
    try:
        walk_through_release(page, run, state, slug)
    except Exception:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(SHOTS / f"{slug}-failure.png"), full_page=True)
        raise


def test_rolled_back_release_shows_its_state_report_and_failed_measurements(releases, page):
    bad = releases["rolled-back"]
    failed = [m for m in bad.record["measurements"] if m["phase"] == "failed"]
    assert failed and failed[-1]["metric"] == "error-rate"
    check(page, bad, "RolledBack", "rolled-back")


def test_promoted_release_shows_completed_report_and_measurements(releases, page):
    good = releases["promoted"]
    # What a promotion means (the demo spec tolerates `inconclusive_limit` measurements with no
    # data yet, which a busy machine gives the first one now and then): nothing failed, every
    # metric measured successfully.
    ms = good.record["measurements"]
    limit = load_spec(DEMO_SPEC).analysis.inconclusive_limit
    assert not {"failed", "error"} & {m["phase"] for m in ms}, ms
    for metric in ("error-rate", "latency-p95"):  # the limit holds per metric
        assert sum(m["phase"] == "inconclusive" for m in ms if m["metric"] == metric) <= limit, ms
    assert {m["metric"] for m in ms if m["phase"] == "successful"} == {
        "error-rate", "latency-p95"}, ms
    check(page, good, "Completed", "promoted")

