"""A simulated closed loop: the real service and the real nightly job, night after night.

A truth instance stands for the customers. The catalog the loop starts from is rough: every
take rate equal (the truth's mean), no price sensitivity, no perk lift, every baseline rate
equal. Each night:

1. customers drawn per segment view the storefront through the service's real routes
   (`GET /v1/offers` with their customer id, in process through the Flask app);
2. each shown offer is bought with the truth's probability for its discount and perk, and a
   held-out customer buys each of the segment's bundles at the truth's baseline rate; the
   storefront reports every purchase with `POST /v1/events` and the view's token;
3. the nightly job (`run_nightly`, publishing) reads the recorded logs from the store,
   re-estimates, solves, with or without exploration, and publishes.

Each night's served plan is valued under the truth (`evaluate_plan`: its expected
incremental margin had the truth held), against the truth's own optimum.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flask.testing import FlaskClient

from api.app import create_app
from api.joblog import JobLog
from jobs.nightly.guardrails import Thresholds
from jobs.nightly.run import NightlySettings, run_nightly
from optimizer.estimation.simulate import arms
from optimizer.io.json_form import instance_to_document
from optimizer.io.tables import write_json
from optimizer.model.instance import Instance
from optimizer.plan.check import evaluate_plan

STOREFRONT = {"Authorization": "Bearer s-token"}
EVENT_BATCH = 500
# the loop starts from a catalog known to be wrong: the guardrails that stop a night whose
# estimates moved a lot, or whose plan looks too good, would stop the learning itself
OPEN_RAILS = Thresholds(objective_tolerance=1.0, max_no_offer_increase=1.0, max_gap=1.0,
                        max_objective_ratio=1e9, max_estimate_drift=1.0)


@dataclass(frozen=True)
class LoopSettings:
    nights: int
    views_per_segment: int  # per night
    explore: float
    seed: int = 0
    time_limit: float = 60.0
    customers_per_segment: int = 400


@dataclass(frozen=True)
class Night:
    night: int
    version: int
    value_under_truth: float  # the served plan's expected incremental margin, were the truth so
    purchases: int
    views: int


def rough(truth: Instance) -> Instance:
    """What the loop starts from: the truth's catalog, with responses that know nothing."""
    r = truth.responses.copy()
    r["take_rate"] = float(r["take_rate"].mean())
    r["price_sensitivity"] = 0.0
    r["baseline_rate"] = float(r["baseline_rate"].fillna(0.0).mean())
    return dataclasses.replace(truth, responses=r, perks=truth.perks.assign(lift=0.0))


def run_loop(truth: Instance, settings: LoopSettings, folder: Path) -> list[Night]:
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.json"
    write_json(catalog, instance_to_document(rough(truth)))
    app = create_app({"TESTING": True, "DATA_DIR": str(folder), "STOREFRONT_TOKENS": "s-token",
                      "MERCHANDISER_TOKENS": "m-token", "RUN_JOBS": False,
                      "FLUSH_SECONDS": 3600.0})  # flushed by hand before each nightly run
    store_url = app.config["DATABASE_URL"]
    customers = Customers(truth, settings, app.test_client())
    nights = []
    for night in range(settings.nights + 1):
        if night:  # night 0 publishes the rough catalog's plan: nothing was served yet
            views, purchases = customers.visit(night)
            app.extensions["offeropt.recorder"].flush()
            nights.append(Night(night, customers.version, _value(truth, app), purchases, views))
        nightly = NightlySettings(
            catalog=str(catalog), store_url=store_url, report_dir=folder / "reports",
            time_limit=settings.time_limit, publish=True, run_key=f"night-{night}",
            thresholds=OPEN_RAILS, explore=settings.explore)
        with open(folder / "nightly.log", "a") as stream:
            code = run_nightly(nightly, JobLog("nightly", stream=stream))
        if code not in (0, 7):
            raise RuntimeError(f"night {night}: the nightly job failed with exit code {code}; "
                               f"see {folder / 'nightly.log'}")
    return nights


def _value(truth: Instance, app: Any) -> float:
    bundle = app.extensions["offeropt.store"].active_bundle()
    report = evaluate_plan(truth, json.loads(bundle["plan"]))
    assert report.objective is not None
    return report.objective


class Customers:
    """The truth's customers at the storefront: views, purchases, events."""

    def __init__(self, truth: Instance, settings: LoopSettings, client: FlaskClient) -> None:
        self.settings, self.client = settings, client
        self.rng = np.random.default_rng(settings.seed)
        table = arms(truth)
        table["perk"] = table["perk"].fillna("")
        self.take = {(s, b, round(float(d), 9), p): float(q) for s, b, d, p, q in
                     table[["segment", "bundle", "discount", "perk", "prob"]].itertuples(index=False)}
        r = truth.responses
        self.baseline: dict[str, list[tuple[str, float]]] = {}
        for s, b, q in r[["segment", "bundle", "baseline_rate"]].itertuples(index=False):
            self.baseline.setdefault(s, []).append((b, 0.0 if math.isnan(q) else float(q)))
        self.segments = list(truth.segments["id"])
        self.version = 0
        self.events = 0

    def visit(self, night: int) -> tuple[int, int]:
        """One night of views; returns (views, purchases)."""
        events: list[dict[str, Any]] = []
        views = 0
        for segment in self.segments:
            who = self.rng.integers(self.settings.customers_per_segment,
                                    size=self.settings.views_per_segment)
            for customer in who:
                answer = self.client.get(f"/v1/offers?segment={segment}&customer_id="
                                         f"{segment}-{customer}", headers=STOREFRONT).get_json()
                self.version = max(self.version, int(answer["plan_version"] or 0))
                views += 1
                events.extend(self._bought(segment, answer))
        for start in range(0, len(events), EVENT_BATCH):
            response = self.client.post("/v1/events", headers=STOREFRONT,
                                        json={"events": events[start:start + EVENT_BATCH]})
            assert response.status_code == 200, response.get_json()
        return views, len(events)

    def _bought(self, segment: str, answer: dict[str, Any]) -> list[dict[str, Any]]:
        if answer["holdout"]:
            chances = self.baseline.get(segment, [])
        else:
            chances = [(o["bundle"], self.take[(segment, o["bundle"], round(o["discount"], 9),
                                                o["perk"] or "")]) for o in answer["offers"]]
        out = []
        for bundle, p in chances:
            if self.rng.random() < p:
                self.events += 1
                out.append({"id": f"e{self.events}", "bundle": bundle,
                            "token": answer["exposure"]})
        return out
