"""The nightly job as cron runs it: a separate process beside a running service and its store.

Three nights while a storefront keeps asking for offers; the job killed with SIGKILL at
random points; the HTML report rendered and photographed in headless Chromium.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from api.store import Store
from cli.exit_codes import ExitCode
from jobs.nightly.ledger import Ledger, NightlyStatus
from optimizer.io import instance_from_document
from optimizer.plan.check import check_plan
from tests.nightly_helpers import (
    base_catalog,
    corrupted_estimates,
    json_lines,
    stock_collapse,
    write,
)
from tests.server import (
    STOREFRONT,
    Child,
    Processes,
    Server,
    wait_for_open_write_transaction,
)

ROOT = Path(__file__).resolve().parents[2]


def nightly(processes: Processes, data_dir: Path, catalog: str, key: str, **env: str) -> Child:
    """The job as cron starts it; the `processes` fixture kills it if a test fails meanwhile.
    The time limit is far beyond what the solves need: how fast the machine is must not
    decide whether a night publishes (a stopped solve can fail the solver_status guardrail)."""
    return processes.start(
        [sys.executable, "-m", "cli", "nightly", "--catalog", catalog, "--publish",
         "--run-key", key, "--time-limit", "300"], name=f"nightly-{key}",
        env={**os.environ, "OFFEROPT_DATA_DIR": str(data_dir), **env}, cwd=ROOT)


def finish(job: Child) -> tuple[int, list[dict[str, Any]]]:
    code = job.wait(timeout=600)
    return code, json_lines(job.stderr())


class Storefront(threading.Thread):
    """Asks for every segment's offers in a loop and keeps what it was served."""

    def __init__(self, server: Server, segments: list[str]) -> None:
        super().__init__(daemon=True)
        self.server, self.segments = server, segments
        self.served: list[tuple[int, dict[str, Any]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for segment in self.segments:
                r = self.server.get(f"/v1/offers?segment={segment}", headers=STOREFRONT)
                self.served.append((r.status_code, r.json()))

    def wait_for(self, version: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.served and self.served[-1][1].get("plan_version") == version:
                return
            time.sleep(0.1)
        raise AssertionError(f"the storefront never saw version {version}")


def _plans_by_version(store: Store) -> dict[int, dict[str, Any]]:
    return {int(p["version"]): json.loads(store.plan(str(p["plan_id"]))["document"])
            for p in store.history()}


def test_three_nights_against_a_running_service(tmp_path: Path, processes: Processes) -> None:
    doc = base_catalog()
    collapsed = stock_collapse(doc)
    server = processes.server(tmp_path)
    storefront = Storefront(server, [s["id"] for s in doc["segments"]][:8])
    try:
        code, logs = finish(nightly(processes, tmp_path, write(doc, tmp_path / "n1.json"),
                                    "night-1"))
        assert code == 0, logs
        storefront.start()
        storefront.wait_for(1)
        code, logs = finish(nightly(processes, tmp_path, write(collapsed, tmp_path / "n2.json"),
                                    "night-2"))
        assert code == 0, logs
        storefront.wait_for(2)
        active = server.get("/v1/plans/active", headers=STOREFRONT).json()
        assert active["version"] == 2
        assert check_plan(instance_from_document(collapsed), active["plan"]).ok  # new stock holds
        corrupt = corrupted_estimates(collapsed)
        code, logs = finish(nightly(processes, tmp_path, write(corrupt, tmp_path / "n3.json"),
                                    "night-3"))
        assert code == ExitCode.KEPT_PREVIOUS, logs
        assert "estimate_drift" in next(x for x in logs if x["event"] == "finished")[
            "failed_guardrails"]
        time.sleep(1.0)  # several index polls: nothing new may appear
        assert server.get("/v1/plans/active", headers=STOREFRONT).json()["version"] == 2
    finally:
        storefront.stop.set()
        storefront.join(timeout=30)
        server.stop()

    # Every answer came whole from one published plan: its offers for that segment, exactly.
    published = _plans_by_version(Store.open(f"sqlite:///{tmp_path / 'offeropt.db'}"))
    assert storefront.served and set(published) == {1, 2}
    for status, body in storefront.served:
        assert status == 200
        plan = published[body["plan_version"]]
        expected = sorted(o["bundle"] for o in plan["offers"] if o["segment"] == body["segment"])
        assert sorted(o["bundle"] for o in body["offers"]) == expected or body["holdout"]
    assert {body["plan_version"] for _, body in storefront.served} == {1, 2}


def test_kill_9_never_leaves_a_partial_publication(tmp_path: Path, processes: Processes) -> None:
    doc = base_catalog()
    assert finish(nightly(processes, tmp_path, write(doc, tmp_path / "n1.json"), "night-1"))[0] == 0
    store = Store.open(f"sqlite:///{tmp_path / 'offeropt.db'}")
    catalog = write(stock_collapse(doc), tmp_path / "n2.json")
    today = instance_from_document(stock_collapse(doc))
    rng = random.Random(20261123)
    # inside the publish transaction (held open far longer than it takes to see it open and
    # kill the job, however slow the machine), then at random points of the whole run
    kills = [("publishing", 0.0), ("anywhere", rng.uniform(0.2, 4.0))]
    versions = []
    for where, delay in kills:
        pause = {"OFFEROPT_PUBLISH_PAUSE_SECONDS": "600"} if where == "publishing" else {}
        job = nightly(processes, tmp_path, catalog, "night-2", **pause)
        if where == "publishing":
            wait_for_open_write_transaction(tmp_path / "offeropt.db", job)
        time.sleep(delay)
        job.kill9()
        _assert_whole(store, today)
        versions.append(store.active()["version"])
        if versions[-1] == 2:
            break  # it finished before the kill: nothing left to interrupt
    assert versions[0] == 1  # killed mid-transaction: the publication rolled back whole
    code, logs = finish(nightly(processes, tmp_path, catalog, "night-2"))
    assert code == 0, logs
    _assert_whole(store, today)
    assert store.active()["version"] == 2 and len(store.history()) == 2  # published exactly once
    assert Ledger(store).row("night-2")["attempts"] >= 2 or logs[0]["event"] == "already_done"


def _assert_whole(store: Store, today: Any) -> None:
    """Either yesterday's state, or the new plan published and recorded: nothing between."""
    active = store.active()
    history = store.history()
    row = Ledger(store).row("night-2")
    assert active is not None and active["version"] == len(history)
    if active["version"] == 1:
        assert row is None or row["status"] != NightlyStatus.PUBLISHED
        return
    assert active["version"] == 2 and row["status"] == NightlyStatus.PUBLISHED
    assert row["plan_id"] == active["plan_id"] and row["version"] == 2
    assert check_plan(today, json.loads(store.plan(active["plan_id"])["document"])).ok


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(tmp_path: Path, processes: Processes) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Chromium is needed (apt-get install chromium; `make test` installs it)"
    doc = base_catalog()
    assert finish(nightly(processes, tmp_path, write(doc, tmp_path / "n1.json"), "night-1"))[0] == 0
    catalog = write(stock_collapse(doc), tmp_path / "n2.json")
    assert finish(nightly(processes, tmp_path, catalog, "night-2"))[0] == 0
    page_file = tmp_path / "reports" / "night-2.html"
    html = page_file.read_text()
    # nothing that loads from elsewhere (an SVG's url(#clip) points inside the page)
    assert not re.search(r"<script|<link|<img|src=|url\((?!#)", html)

    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url))
        page.goto(page_file.as_uri())
        page.screenshot(path=str(shot), full_page=True)
        assert page.locator("#kpi-table tbody tr").count() == 8
        assert "Incremental margin" in page.locator("#kpi-table").inner_text()
        boxes = {}
        for plot in ("plot-kpis", "plot-movers", "plot-inventory"):
            box = page.locator(f"#{plot} svg").bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100, plot
            assert page.locator(f"#{plot} svg path").count() > 5, plot  # bars and axes drawn
            boxes[plot] = box
        browser.close()
    assert fetched == [page_file.as_uri()]  # self-contained: nothing else is loaded
    image = Image.open(shot).convert("RGB")
    for plot, box in boxes.items():  # the photographed plot shows bars, not a blank area
        region = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
                             int(box["y"] + box["height"])))
        colors = region.getcolors(maxcolors=1 << 20) or []
        assert len(colors) > 10, plot
