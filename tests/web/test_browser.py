"""The workbench in real headless Chromium (Playwright) against a real `offeropt serve`.

One server and one browser per module; each test signs in with a fresh browser context
and ends with a screenshot (under its tmp_path) checked for the elements it names. The
demo catalog solves in about a second; the whole module stays within a few dozen seconds.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.constants import DATA, ROOT
from tests.server import MERCHANDISER, STOREFRONT, Server
from tests.web.shots import chart_points, shoot

pytestmark = pytest.mark.slow
DEMO = json.loads((DATA / "demo.json").read_text())
PLANS: dict[str, str] = {}  # the demo's plan, once a test (or a fixture) solved it
WAIT_MS = 60_000


def _variant() -> dict[str, Any]:
    """The demo with one offer per view at most: many segments lose offers."""
    doc = copy.deepcopy(DEMO)
    doc["policy"]["max_offers_per_view"] = 1
    return doc


@pytest.fixture(scope="module")
def variant_run(web_server: Server) -> str:
    """The variant, queued as soon as the server runs: it solves while other tests run."""
    answer = web_server.post("/v1/catalog-plans?time_limit=20", json=_variant(),
                             headers=MERCHANDISER)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


def _plan_of(server: Server, run_id: str) -> str:
    run = server.wait_run(run_id, timeout=90)
    assert run["status"] == "succeeded" and run["plan_status"] == "optimal", run
    return str(run["plan_id"])


@pytest.fixture(scope="module")
def variant_plan(web_server: Server, variant_run: str) -> str:
    return _plan_of(web_server, variant_run)


@pytest.fixture
def demo_plan(web_server: Server, variant_run: str) -> str:
    """The demo's plan: the one the upload test solved through the page, else one solved
    through the API (when this test runs alone, or on another test process)."""
    if "demo" not in PLANS:
        answer = web_server.post("/v1/catalog-plans?time_limit=20", json=DEMO,
                                 headers=MERCHANDISER)
        PLANS["demo"] = _plan_of(web_server, answer.json()["run_id"])
    return PLANS["demo"]


@pytest.fixture
def page(browser: Any, web_server: Server, variant_run: str) -> Iterator[Any]:
    """A signed-in page of a fresh browser context; no script error may happen on it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=web_server.base)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and
           "422" not in msg.text else None)  # the refused upload answers 422, by design
    tab.goto("/")
    assert tab.url.endswith("/sign-in")
    tab.fill("#token", "m-token")
    tab.click("#sign-in button[type=submit]")
    tab.wait_for_url(re.compile(r"/$"))
    assert "Signed in as" in tab.locator("header.top").inner_text()
    yield tab
    context.close()
    assert not errors, errors


def _offers(server: Server, segment: str) -> dict[str, Any]:
    answer = server.get(f"/v1/offers?segment={segment}", headers=STOREFRONT)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _served(server: Server, segment: str, version: int) -> dict[str, Any]:
    """The storefront's answer once it serves `version` (workers poll every 0.2 s)."""
    deadline = time.monotonic() + 30
    while True:
        body = _offers(server, segment)
        if body.get("plan_version") == version or time.monotonic() > deadline:
            assert body.get("plan_version") == version, body
            return body
        time.sleep(0.1)


def _chart_grows(page: Any, canvas: str, points: int, timeout: float) -> list[int]:
    """The chart's point counts once some dataset holds `points` points, read with
    page.evaluate every half second (the page's CSP forbids the eval of wait_for_function's
    string predicates); fails after `timeout` seconds with the counts last seen."""
    deadline = time.monotonic() + timeout
    while True:
        seen = chart_points(page, canvas)
        if max(seen, default=0) >= points:
            return seen
        assert time.monotonic() < deadline, f"{canvas} never reached {points} points: {seen}"
        page.wait_for_timeout(500)


def test_sign_in_and_a_bad_catalog_lists_its_errors_by_field_and_row(
        page: Any, tmp_path: Path) -> None:
    bad = copy.deepcopy(DEMO)
    bad["items"][1]["price"] = -5
    bad["responses"][2]["take_rate"] = 1.7
    del bad["segments"][0]["views"]
    upload = tmp_path / "bad-catalog.json"
    upload.write_text(json.dumps(bad))
    page.set_input_files("#catalog", str(upload))
    page.click("#upload button[type=submit]")
    page.wait_for_selector("#upload-errors")
    rows = page.locator("#upload-errors tr.issue")
    assert rows.count() == 3
    text = page.locator("#upload-errors").inner_text()
    assert "In items, row 2 (laptop-16-pro): price must be > 0, got -5." in text
    assert "In responses, row 3 (champions-cart / hair-duo): take_rate must be in (0, 1), got 1.7." \
        in text
    assert "In segments, row 1 (champions-cart): views is required." in text
    assert "bad-catalog.json" in page.locator("#upload").inner_text()
    shoot(page, tmp_path / "bad-catalog.png", "#upload-errors", "#catalog")


def test_upload_the_demo_and_watch_its_solve(page: Any, tmp_path: Path) -> None:
    polls: list[str] = []
    page.on("response", lambda r: polls.append(r.url) if r.url.endswith("/progress") else None)
    page.set_input_files("#catalog", str(DATA / "demo.json"))
    page.fill("#time_limit", "20")
    page.click("#upload button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\w+$"))
    page.wait_for_selector("#progress[data-status=succeeded]", timeout=WAIT_MS)
    assert polls, "the page never polled the run's progress"
    _chart_grows(page, "progress-chart", 1, timeout=WAIT_MS / 1000)
    objective, bound = chart_points(page, "progress-chart")
    assert objective >= 1 and bound >= 1
    assert re.fullmatch(r"[\d,]+", page.locator("#run-objective").inner_text())
    assert page.locator("#run-gap").inner_text().endswith("%")
    shoot(page, tmp_path / "solve.png", "#progress-chart", "#progress table", "#open-plan")
    page.click("#open-plan")
    page.wait_for_selector("#kpi-table")
    plan_id = page.url.rsplit("/", 1)[1]
    PLANS["demo"] = plan_id


def test_open_the_plan(page: Any, demo_plan: str, tmp_path: Path) -> None:
    page.goto(f"/plans/{demo_plan}")
    kpis = page.locator("#kpi-table").inner_text()
    assert "Promotion spend" in kpis and "budget 900,000 JPY" in kpis
    assert "Aggregate margin rate" in kpis and "at least 20.00%" in kpis
    assert chart_points(page, "inventory-chart") == [8]  # the demo's stocked items
    segments = page.locator("#offers-table tbody.segment")
    assert segments.count() == 10
    champions = page.locator("#offers-table tbody[data-segment=champions-cart]").inner_text()
    assert "Laptop care set" in champions and "8,400 JPY" in champions  # name, reference price
    lens_kit = page.locator("#offers-table tbody[data-segment=champions-product] "
                            "tr[data-bundle=camera-lens-kit]").inner_text()
    assert "140,000 JPY" in lens_kit and "132,000 JPY" in lens_kit and "8,000 JPY" in lens_kit
    shadow = page.locator("#shadow-table").inner_text()
    assert re.search(r"One more unit of sleeve-14 stock would add about [\d,]+ JPY of incremental "
                     r"margin\.", shadow), shadow
    assert "4 segments show their maximum number of offers per view." in shadow
    shoot(page, tmp_path / "plan.png", "#kpi-table", "#inventory-chart", "#shadow-table",
          "#offers-table")


def test_why_not_for_an_excluded_pair(page: Any, demo_plan: str, tmp_path: Path) -> None:
    page.goto(f"/plans/{demo_plan}")
    shown = page.locator("#offers-table tbody[data-segment=champions-cart] tr[data-bundle]")
    assert "laptop-pro-upgrade" not in [shown.nth(i).get_attribute("data-bundle")
                                        for i in range(shown.count())]
    page.select_option("#why-segment", "champions-cart")
    page.select_option("#why-bundle", "laptop-pro-upgrade")
    page.click("#why-not button[type=submit]")
    entry = page.locator("#why-not-result article[data-bundle=laptop-pro-upgrade]")
    entry.wait_for()
    assert page.url.endswith(demo_plan)  # answered in place (htmx), no page load
    assert entry.get_attribute("data-reason") != "in_plan"
    heading = entry.locator("h3").inner_text()
    assert "Step up to Laptop 16\" Pro" in heading and "not in the plan" in heading
    words = entry.locator("p.words").inner_text()
    assert len(words) > 40 and "laptop-pro-upgrade" in words, words
    shoot(page, tmp_path / "why-not.png", "#why-not-result", "#why-not form")


def test_a_three_point_frontier(page: Any, demo_plan: str, tmp_path: Path) -> None:
    page.goto(f"/plans/{demo_plan}")
    assert page.locator("#frontier-vary").input_value() == "promotion_budget"
    values = [page.locator(f"#frontier-value-{k}").input_value() for k in (1, 2, 3)]
    assert values == ["450000", "900000", "1350000"]
    page.fill("#frontier-time", "20")
    page.click("#frontier-form button[type=submit]")
    page.wait_for_url(re.compile(r"/frontiers/\w+$"))
    page.wait_for_selector("#frontier-progress[data-status=succeeded]", timeout=WAIT_MS)
    rows = page.locator("#frontier-table tbody tr")
    assert rows.count() == 3
    assert [rows.nth(i).locator("th").inner_text() for i in range(3)] == \
        ["450,000 JPY", "900,000 JPY", "1,350,000 JPY"]
    assert rows.nth(2).locator("td").first.inner_text() != rows.nth(0).locator("td").first.inner_text()
    _chart_grows(page, "frontier-chart", 3, timeout=WAIT_MS / 1000)
    assert chart_points(page, "frontier-chart") == [3, 3]
    assert page.locator("#frontier-verdict").is_visible()
    shoot(page, tmp_path / "frontier.png", "#frontier-chart", "#frontier-table")


def test_publish_and_roll_back_change_the_storefront_answer(
        page: Any, web_server: Server, demo_plan: str, variant_plan: str, tmp_path: Path) -> None:
    segment = "loyal-checkout"  # two offers in the demo's plan, one in the variant's
    before = _offers(web_server, segment)
    # publish the demo's plan: plan page, confirmation, history
    page.goto(f"/plans/{demo_plan}")
    page.click("#publish-link")
    page.wait_for_selector("#confirm-publish")
    shoot(page, tmp_path / "confirm-publish.png", "#confirm-publish", "#confirm-publish-button")
    page.click("#confirm-publish-button")
    page.wait_for_url(re.compile(r"/history$"))
    first = int(page.locator("#history-table tr.active").get_attribute("data-version") or 0)
    assert first == (before.get("plan_version") or 0) + 1
    demo_answer = _served(web_server, segment, first)
    assert len(demo_answer["offers"]) == 2 and demo_answer["offers"] != before.get("offers")
    # the variant against the active plan: what changes, then publish it
    page.goto(f"/plans/{variant_plan}")
    compare = page.locator("#compare").inner_text()
    assert f"Against version {first}" in compare and "removed" in compare
    assert page.locator("#movers tbody tr").count() >= 1
    assert page.locator("#offers-removed li").count() >= 1
    shoot(page, tmp_path / "compare.png", "#compare", "#movers", "#publish-link")
    page.click("#publish-link")
    page.click("#confirm-publish-button")
    page.wait_for_url(re.compile(r"/history$"))
    variant_answer = _served(web_server, segment, first + 1)
    assert len(variant_answer["offers"]) == 1
    # roll back to the demo's plan, with a confirmation
    page.click("#rollback-previous")
    page.wait_for_selector("#confirm-rollback")
    assert f"version <strong>{first}</strong>" in page.locator("#confirm-rollback").inner_html() \
        or f"version {first}" in page.locator("#confirm-rollback").inner_text()
    page.click("#confirm-rollback-button")
    page.wait_for_url(re.compile(r"/history$"))
    rolled = _served(web_server, segment, first + 2)
    assert [o["bundle"] for o in rolled["offers"]] == [o["bundle"] for o in demo_answer["offers"]]
    history = page.locator("#history-table tbody tr")
    assert history.count() >= 3
    assert page.locator("#history-table tr.active td").first.inner_text().startswith("rollback")
    shoot(page, tmp_path / "history.png", "#history-table", "p.flash")


def test_a_long_solve_grows_its_chart_while_it_runs_and_cancels_from_the_page(
        page: Any, web_server: Server, tmp_path: Path) -> None:
    """medium.json takes HiGHS over a minute at the form's gap (benchmarks/README.md): the
    chart must gain points from the page's own polls while the run is still running, then
    the page's cancel button ends the solve (the API cancels it if the test fails first)."""
    polls: list[str] = []
    page.on("response", lambda r: polls.append(r.url) if r.url.endswith("/progress") else None)
    page.set_input_files("#catalog", str(ROOT / "instances" / "medium.json"))
    page.fill("#time_limit", "600")
    page.click("#upload button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\w+$"), timeout=120_000)
    run_id = page.url.rsplit("/", 1)[1]
    try:
        assert "time limit 600 s" in page.locator("p.meta").first.inner_text()
        page.wait_for_selector("#progress[data-status=running]", timeout=180_000)
        # the first point once the solver reports a figure, then two more from later polls
        before = _chart_grows(page, "progress-chart", 1, timeout=180)
        polled = len(polls)
        after = _chart_grows(page, "progress-chart", max(before) + 2, timeout=60)
        assert page.locator("#progress").get_attribute("data-status") == "running", \
            "the solve ended before the chart grew: no live growth was seen"
        assert max(after) >= max(before) + 2 and len(polls) > polled, (before, after, polls)
        assert all(a >= b for a, b in zip(after, before, strict=True)), (before, after)
        seconds: list[list[float]] = page.evaluate(
            "Chart.getChart('progress-chart').data.datasets.map(d => d.data.map(p => p.x))")
        for series in seconds:  # a point per poll that read a later elapsed time, in order
            assert series == sorted(set(series)), seconds
        assert re.fullmatch(r"[\d.]+ s", page.locator("#run-elapsed").inner_text())
        assert "Solving" in page.locator("#progress").inner_text()
        shoot(page, tmp_path / "long-solve.png", "#progress-chart", "#progress",
              "#progress button[type=submit]")
        page.click("#progress button[type=submit]")
        page.wait_for_selector("p.flash")
        assert "Cancel requested" in page.locator("p.flash").inner_text()
        page.wait_for_selector("#progress[data-status=cancelled]", timeout=WAIT_MS)
        assert page.locator("#progress button[type=submit]").count() == 0
    finally:
        requests.delete(f"{web_server.base}/v1/runs/{run_id}", headers=MERCHANDISER, timeout=30)
    run = web_server.wait_run(run_id, timeout=60)
    assert run["status"] == "cancelled", run
