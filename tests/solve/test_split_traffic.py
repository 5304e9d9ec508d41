"""Split traffic (spec section 7): the plan's offer sets, their CSV, the CLI and nightly
options, and the storefront serving one set per view by a stable, salted hash."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask

from api.app import create_app
from api.offers import ActiveIndex
from api.store import RunStatus, Store
from optimizer.io import instance_from_document
from optimizer.io.json_form import instance_to_document
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan
from optimizer.plan.document import build_plan, offers_frame, plan_sets_csv, set_id
from optimizer.plan.model import Plan
from optimizer.solve.dispatch import Solution, SolveOptions, solve
from tests.constants import DATA, MERCHANDISER, STOREFRONT
from tests.plans import plan_document
from tests.service.index_helpers import file_index
from tests.split_helpers import split_solution, tight_demo, tight_demo_document

OLD_ANSWER_KEYS = ["segment", "plan_version", "holdout", "offers", "reason"]


@pytest.fixture(scope="module")
def split() -> tuple[Instance, Solution, dict[str, Any]]:
    inst = tight_demo()
    solution = split_solution(inst, integral_objective=solve(inst).objective)
    return inst, solution, plan_document(solution)


# -- the plan document -------------------------------------------------------------------------


def test_split_plan_document(split: tuple[Instance, Solution, dict[str, Any]]) -> None:
    inst, solution, doc = split
    sets = doc["offer_sets"]
    by_segment: dict[str, list[dict[str, Any]]] = {}
    for entry in sets:
        by_segment.setdefault(entry["segment"], []).append(entry)
        assert entry["explore"] is False and 0 < entry["weight"] <= 1
    for entries in by_segment.values():
        assert [e["set"] for e in entries] == [set_id(k) for k in range(len(entries))]
        assert sum(e["weight"] for e in entries) == pytest.approx(1.0, abs=1e-12)
    split_segments = [s for s, e in by_segment.items() if len(e) > 1]
    assert doc["solver"]["split"] == {"segments_split": len(split_segments), "sets": len(sets)}
    assert len(split_segments) >= 3
    # offers stay the marginal view: one row per distinct candidate, its share the sets' weight
    held: Counter[tuple[Any, ...]] = Counter()
    for entry in sets:
        for o in entry["offers"]:
            held[(entry["segment"], o["bundle"], o["discount"], o["perk"])] += entry["weight"]
    assert {(o["segment"], o["bundle"], o["discount"], o["perk"]): o["share"]
            for o in doc["offers"]} == pytest.approx(dict(held))
    assert any(o["share"] < 1 for o in doc["offers"])
    # every KPI and offer figure is share-weighted: the independent check recomputes them
    report = check_plan(inst, doc)
    assert report.ok, report.violations
    frame = offers_frame(solution)
    assert frame["expected_incremental_margin"].sum() == pytest.approx(doc["objective"])
    assert doc["kpis"]["impressions"] < sum(  # a split segment's offers share its views
        inst.segments.set_index("id")["views"][o["segment"]] for o in doc["offers"])
    assert doc["objective"] > doc["solver"]["integral_objective"]  # the LP gains here


def test_share_weighted_binding_and_inventory(split: tuple[Instance, Solution, dict[str, Any]]
                                              ) -> None:
    _, _, doc = split
    lens = doc["kpis"]["inventory"]["lens-35"]
    assert lens["used"] == pytest.approx(lens["stock"])  # the scarce lens is used up exactly
    assert any(b.get("item") == "lens-35" for b in doc["binding"])


def test_integral_plan_has_no_offer_sets() -> None:
    inst = instance_from_document(json.loads((DATA / "demo.json").read_text()))
    doc = plan_document(solve(inst))
    assert "offer_sets" not in doc and "split" not in doc["solver"]
    assert all(o["share"] == 1.0 for o in doc["offers"])


def test_set_ids() -> None:
    assert [set_id(k) for k in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == \
        ["a", "b", "z", "aa", "ab", "az", "ba", "zz", "aaa"]


def test_sets_csv_one_row_per_set_offer_and_empty_sets() -> None:
    doc = tight_demo_document()
    doc["policy"]["min_offers_per_view"] = 0
    inst = instance_from_document(doc)
    plan = build_plan(split_solution(inst))
    rows = list(csv.DictReader(io.StringIO(plan_sets_csv(plan))))
    assert list(rows[0]) == ["segment", "set", "weight", "explore", "bundle", "discount", "perk"]
    assert plan.offer_sets is not None
    assert len(rows) == sum(max(1, len(e.offers)) for e in plan.offer_sets)
    empty = [r for r in rows if not r["bundle"]]
    assert empty and all(r["discount"] == "" and r["perk"] == "" for r in empty)
    weights: dict[tuple[str, str], float] = {(r["segment"], r["set"]): float(r["weight"])
                                             for r in rows}
    per_segment = Counter[str]()
    for (segment, _), w in weights.items():
        per_segment[segment] += w  # type: ignore[assignment]
    assert all(abs(total - 1) < 1e-9 for total in per_segment.values())


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def fake_split_solver(monkeypatch: pytest.MonkeyPatch) -> list[SolveOptions]:
    """`solve` answering with the scipy LP's split plan (until the solver's own lands)."""
    import optimizer.solve.dispatch

    seen: list[SolveOptions] = []

    def fake(instance: Instance, options: SolveOptions | None = None) -> Solution:
        assert options is not None
        seen.append(options)
        return split_solution(instance, integral_objective=56_000_000.0)

    monkeypatch.setattr(optimizer.solve.dispatch, "solve", fake)
    return seen


def test_cli_split_traffic(tmp_path: Path, fake_split_solver: list[SolveOptions],
                           capsys: pytest.CaptureFixture[str]) -> None:
    from cli.exit_codes import ExitCode
    from cli.main import main

    instance = tmp_path / "tight.json"
    instance.write_text(json.dumps(tight_demo_document()))
    out = tmp_path / "plan.csv"
    assert main(["solve", str(instance), "--split-traffic", "-o", str(out)]) == ExitCode.OK
    assert fake_split_solver[0].split_traffic is True
    text = capsys.readouterr().out
    assert "split traffic: 5 segments split between 16 offer sets" in text
    assert "split traffic: +4,051,402 JPY (+7.23%) over the best integral plan" in text
    assert "check: plan independently verified" in text
    assert f"plan written to {out} (offer sets in {tmp_path / 'plan.sets.csv'})" in text
    assert out.read_text().startswith("segment,bundle,discount,perk,share,")
    assert (tmp_path / "plan.sets.csv").read_text().startswith("segment,set,weight,explore,")


def test_cli_without_split_traffic_asks_for_an_integral_plan(tmp_path: Path) -> None:
    from cli.exit_codes import ExitCode
    from cli.main import main

    out = tmp_path / "plan.csv"
    assert main(["solve", str(DATA / "demo.json"), "-o", str(out)]) == ExitCode.OK
    assert not (tmp_path / "plan.sets.csv").exists()


# -- the storefront index ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(split: tuple[Instance, Solution, dict[str, Any]],
          tmp_path_factory: pytest.TempPathFactory) -> ActiveIndex:
    inst, _, doc = split
    return file_index(tmp_path_factory.mktemp("index"), inst, doc)


def _weights(doc: dict[str, Any], segment: str) -> dict[str, float]:
    return {e["set"]: e["weight"] for e in doc["offer_sets"] if e["segment"] == segment}


def test_realized_split_matches_the_weights(index: ActiveIndex,
                                            split: tuple[Instance, Solution, dict[str, Any]]
                                            ) -> None:
    _, _, doc = split
    n = 100_000
    for segment in ("champions-product", "loyal-checkout"):
        counts = Counter(index.choose(segment, f"customer-{i}")[0] for i in range(n))
        weights = _weights(doc, segment)
        assert len(weights) > 1
        for k, set_name in enumerate(index.set_ids(segment)):
            assert abs(counts[k] / n - weights[set_name]) < 0.01, (segment, set_name)


def test_anonymous_views_are_split_by_the_weights_too(index: ActiveIndex,
                                                      split: tuple[Instance, Solution,
                                                                   dict[str, Any]]) -> None:
    _, _, doc = split
    n = 100_000
    weights = _weights(doc, "champions-product")
    random_draws = Counter(index.choose("champions-product", None)[0] for _ in range(n))
    keyed = Counter(index.choose("champions-product", None, f"req-{i}")[0] for i in range(n))
    for counts in (random_draws, keyed):
        for k, set_name in enumerate(index.set_ids("champions-product")):
            assert abs(counts[k] / n - weights[set_name]) < 0.01
    assert index.choose("champions-product", None, "req-7") == \
        index.choose("champions-product", None, "req-7")
    assert index.choose("champions-product", None)[1] == "request"


def test_a_customer_keeps_the_set_while_plan_and_salt_stay(
        split: tuple[Instance, Solution, dict[str, Any]], index: ActiveIndex,
        tmp_path: Path) -> None:
    inst, _, doc = split
    republished = file_index(tmp_path, inst, doc, version=7)  # same plan, new version
    for i in range(2_000):
        customer = f"customer-{i}"
        first = index.choose("champions-product", customer)
        assert first[1] == "customer"
        assert index.choose("champions-product", customer) == first
        assert republished.choose("champions-product", customer) == first


def test_a_salt_rotation_reassigns_customers(split: tuple[Instance, Solution, dict[str, Any]],
                                             index: ActiveIndex) -> None:
    _, _, doc = split
    rotated = index.with_salts("salt-2", "")
    n = 20_000
    moved = sum(index.choose("loyal-checkout", f"c{i}") != rotated.choose("loyal-checkout", f"c{i}")
                for i in range(n))
    w = np.array(list(_weights(doc, "loyal-checkout").values()))
    assert abs(moved / n - (1 - (w**2).sum())) < 0.02  # independent draws: 1 - sum w^2 change


def test_the_answer_is_the_served_set(index: ActiveIndex,
                                      split: tuple[Instance, Solution, dict[str, Any]]) -> None:
    _, _, doc = split
    sets = {(e["segment"], e["set"]): e for e in doc["offer_sets"]}
    for i in range(200):
        customer = f"customer-{i}"
        body = json.loads(index.answer("champions-product", customer, frozenset())[0])
        if body["holdout"]:
            assert body["offers"] == [] and "set" not in body  # holdout logic as before
            continue
        assert list(body) == [*OLD_ANSWER_KEYS, "set", "assignment", "exposure"]
        assert body["assignment"] == "customer"
        served = sets[("champions-product", body["set"])]["offers"]
        assert [(o["bundle"], o["discount"], o["perk"]) for o in body["offers"]] == \
            [(o["bundle"], o["discount"], o["perk"]) for o in served]
    one = json.loads(index.answer("saas-trial-account", "c1", frozenset())[0])
    assert (one["set"], one["assignment"]) == ("a", "segment")  # a single set: every view


def test_cart_exclusions_filter_the_served_set(index: ActiveIndex) -> None:
    body = json.loads(index.answer("loyal-checkout", "c3", frozenset({"mouse-m2"}))[0])
    full = json.loads(index.answer("loyal-checkout", "c3", frozenset())[0])
    assert body["set"] == full["set"] and len(body["offers"]) == len(full["offers"]) - 1
    assert "laptop-care" not in {o["bundle"] for o in body["offers"]}


def test_an_empty_set_is_served_with_its_reason(tmp_path: Path) -> None:
    doc = tight_demo_document()
    doc["policy"]["min_offers_per_view"] = 0
    inst = instance_from_document(doc)
    plan = plan_document(split_solution(inst))
    empty = next(e for e in plan["offer_sets"] if not e["offers"])
    index = file_index(tmp_path, inst, plan)
    bodies = [json.loads(index.answer(empty["segment"], f"c{i}", frozenset())[0])
              for i in range(200)]
    served = [b for b in bodies if b.get("set") == empty["set"]]
    assert served and all(b["offers"] == [] and b["reason"] ==
                          "the offer set served to this view is empty" for b in served)


def test_an_integral_plan_is_served_as_before(tmp_path: Path) -> None:
    inst = instance_from_document(json.loads((DATA / "demo.json").read_text()))
    index = file_index(tmp_path, inst, plan_document(solve(inst)))
    for segment in inst.segments["id"]:
        assert not index.is_split(segment) and index.set_ids(segment) == ("a",)
        customer = next(c for c in (f"c{i}" for i in range(100)) if not index.in_holdout(c))
        body = json.loads(index.answer(segment, customer, frozenset())[0])
        assert list(body) == [*OLD_ANSWER_KEYS, "exposure"]
        for customer in ("c1", "c2", None):
            body = json.loads(index.answer(segment, customer, frozenset({"mouse-m2"}))[0])
            assert list(body) == [*OLD_ANSWER_KEYS, "exposure"]


# -- the service: store salt, rotation, options --------------------------------------------------


@pytest.fixture
def quiet_app(tmp_path: Path) -> Flask:
    """The app without a solve dispatcher: the tests publish plans through the store."""
    return create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "INDEX_POLL_SECONDS": 0.0,
                       "MERCHANDISER_TOKENS": "m-token", "STOREFRONT_TOKENS": "s-token",
                       "RUN_JOBS": False})


def _publish(store: Store, inst: Instance, plan: dict[str, Any]) -> str:
    catalog = json.dumps(instance_to_document(inst), sort_keys=True)
    run_id, _ = store.submit(inst.name, catalog, "sha", {"time_limit": 1}, "test", None)
    store.finish_run(run_id, RunStatus.SUCCEEDED, Plan.from_dict(plan), checked=True,
                     plan_status=plan["status"])
    plan_id = str(store.run(run_id)["plan_id"])
    store.publish(plan_id, "test")
    return plan_id


def _sets_of(client: Any, segment: str, customers: list[str]) -> list[str]:
    out = []
    for c in customers:
        body = client.get(f"/v1/offers?segment={segment}&customer_id={c}",
                          headers=STOREFRONT).get_json()
        out.append(body.get("set") or "holdout")
    return out


def test_split_plan_over_the_api_and_salt_rotation(
        quiet_app: Flask, split: tuple[Instance, Solution, dict[str, Any]]) -> None:
    inst, _, doc = split
    store: Store = quiet_app.extensions["offeropt.store"]
    _publish(store, inst, doc)
    client = quiet_app.test_client()
    customers = [f"c{i}" for i in range(300)]
    before = _sets_of(client, "champions-product", customers)
    assert set(before) == {"a", "b", "c", "holdout"}
    assert _sets_of(client, "champions-product", customers) == before  # stable
    anonymous = client.get("/v1/offers?segment=champions-product", headers=STOREFRONT)
    assert anonymous.get_json()["assignment"] == "request"
    assert anonymous.headers["Cache-Control"] == "private, max-age=30"  # no shared caching
    keyed = [client.get("/v1/offers?segment=champions-product",
                        headers={**STOREFRONT, "X-Request-Id": "r-1"}).get_json()["set"]
             for _ in range(5)]
    assert len(set(keyed)) == 1
    single = client.get("/v1/offers?segment=saas-trial-account", headers=STOREFRONT)
    assert single.headers["Cache-Control"] == "public, max-age=30"  # anonymous: not recorded

    assert client.post("/v1/traffic-salt/rotate", headers=STOREFRONT).status_code == 403
    rotated = client.post("/v1/traffic-salt/rotate", headers=MERCHANDISER)
    assert rotated.status_code == 200
    assert rotated.get_json()["salt_version"] == 2
    assert rotated.get_json()["rotated_by"].startswith("merchandiser:")
    after = _sets_of(client, "champions-product", customers)
    assert [a == "holdout" for a in after] == [b == "holdout" for b in before]  # holdout stays
    assert sum(a != b for a, b in zip(before, after, strict=True)) > 30
    assert _sets_of(client, "champions-product", customers) == after


def test_integral_plan_over_the_api_has_no_set(quiet_app: Flask) -> None:
    inst = instance_from_document(json.loads((DATA / "demo.json").read_text()))
    _publish(quiet_app.extensions["offeropt.store"], inst, plan_document(solve(inst)))
    body = quiet_app.test_client().get("/v1/offers?segment=loyal-checkout&customer_id=c1",
                                       headers=STOREFRONT).get_json()
    assert list(body) == [*OLD_ANSWER_KEYS, "exposure"]


def test_salt_is_migrated_read_with_the_plan_and_rotated(database_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import api.store
    from api.store.schema import MIGRATIONS

    monkeypatch.setattr(api.store, "MIGRATIONS", MIGRATIONS[:2])  # a store from before the salt
    store = Store.open(database_url)
    assert store.schema_version() == 2
    monkeypatch.setattr(api.store, "MIGRATIONS", MIGRATIONS)
    assert store.migrate() == len(MIGRATIONS) and store.schema_version() == len(MIGRATIONS)
    assert store.serving() is None  # nothing published yet
    inst = tight_demo()
    _publish(store, inst, plan_document(split_solution(inst)))
    serving, bundle = store.serving(), store.active_bundle()
    assert serving is not None and bundle is not None
    assert len(serving["salt"]) == 32 and bundle["salt"] == serving["salt"]
    rotated = store.rotate_salt("merchandiser:abc")
    assert rotated["salt_version"] == 2
    moved = store.serving()
    assert moved is not None and moved["salt"] != serving["salt"]
    assert moved["version"] == serving["version"]  # the plan did not move
    assert store.rotate_salt("x")["salt_version"] == 3


def test_catalog_plans_split_traffic_option(quiet_app: Flask, fake_split_solver: list[SolveOptions]
                                            ) -> None:
    from api.jobs import execute_run

    client = quiet_app.test_client()
    doc = tight_demo_document()
    bad = client.post("/v1/catalog-plans?split_traffic=yes", json=doc, headers=MERCHANDISER)
    assert bad.status_code == 422
    assert bad.get_json()["errors"] == [{
        "path": "split_traffic", "rule": "must be 'true' or 'false'", "value": "yes",
        "message": "split_traffic: must be 'true' or 'false', got 'yes'"}]
    plain = client.post("/v1/catalog-plans", json=doc, headers=MERCHANDISER).get_json()
    assert client.get(plain["links"]["self"], headers=MERCHANDISER).get_json()["options"][
        "split_traffic"] is False
    created = client.post("/v1/catalog-plans?split_traffic=true", json=doc, headers=MERCHANDISER)
    assert created.status_code == 202
    run_id = created.get_json()["run_id"]
    store: Store = quiet_app.extensions["offeropt.store"]
    assert json.loads(store.run(run_id)["options"])["split_traffic"] is True
    execute_run(quiet_app.config["DATABASE_URL"], run_id)  # what the solve process runs
    assert fake_split_solver[-1].split_traffic is True
    run = client.get(f"/v1/runs/{run_id}", headers=MERCHANDISER).get_json()
    assert run["status"] == "succeeded" and run["error"] is None
    plan = client.get(f"/v1/runs/{run_id}/plan", headers=MERCHANDISER).get_json()
    assert plan["offer_sets"]
    from optimizer.plan.schema import PlanDocument

    PlanDocument.model_validate(plan)  # the documented schema accepts a split plan
    assert client.post(f"/v1/plans/{run['plan_id']}/publish",
                       headers=MERCHANDISER).status_code == 200  # it passed the check


def test_split_plan_solved_published_and_served_by_the_service(client: Any) -> None:
    """The whole path with the real solver: submit with split_traffic=true, publish, serve."""
    from tests.api_helpers import solved_plan

    run = solved_plan(client, tight_demo_document(), split_traffic="true")
    assert run["options"]["split_traffic"] is True and run["error"] is None
    plan = client.get(f"/v1/runs/{run['id']}/plan", headers=MERCHANDISER).get_json()
    assert plan["offer_sets"] and plan["solver"]["split"]["segments_split"] > 0
    assert client.post(f"/v1/plans/{run['plan_id']}/publish",
                       headers=MERCHANDISER).status_code == 200
    split_segment = next(e["segment"] for e in plan["offer_sets"] if e["weight"] < 1)
    served = {client.get(f"/v1/offers?segment={split_segment}&customer_id=c{i}",
                         headers=STOREFRONT).get_json().get("set") for i in range(200)}
    assert len(served - {None}) > 1  # None: holdout customers


def test_openapi_documents_split_traffic(quiet_app: Flask) -> None:
    spec = quiet_app.test_client().get("/openapi.json").get_json()
    params = {p["name"]: p for p in spec["paths"]["/v1/catalog-plans"]["post"]["parameters"]}
    assert params["split_traffic"]["schema"] == {"type": "boolean"}
    rotate = spec["paths"]["/v1/traffic-salt/rotate"]["post"]
    assert rotate["security"] == [{"bearer": []}] and "200" in rotate["responses"]
    schemas = spec["components"]["schemas"]
    assert "OfferSet" in schemas and "set" in schemas["Offers"]["properties"]


# -- the nightly job -----------------------------------------------------------------------------


def test_nightly_split_traffic(tmp_path: Path, fake_split_solver: list[SolveOptions],
                               capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(tight_demo_document()))
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    code = main(["nightly", "--catalog", str(catalog), "--store", store_url, "--publish",
                 "--run-key", "n1", "--report-dir", str(tmp_path / "reports"), "--time-limit",
                 "30", "--split-traffic"])
    assert code == 0, capsys.readouterr()
    assert fake_split_solver and all(o.split_traffic for o in fake_split_solver)
    active = Store.open(store_url).active_bundle()
    assert active is not None and json.loads(active["plan"])["offer_sets"]


def test_nightly_run_key_digest_is_unchanged_without_split_traffic(tmp_path: Path) -> None:
    import dataclasses
    import hashlib

    from jobs.nightly.run import NightlySettings

    catalog = tmp_path / "catalog.json"
    catalog.write_text("{}")
    settings = NightlySettings(catalog=str(catalog), store_url="sqlite://", report_dir=tmp_path)
    digest = hashlib.sha256()  # the digest as it was before the option existed
    digest.update(catalog.name.encode() + catalog.read_bytes())
    options = {k: v for k, v in dataclasses.asdict(settings).items()
               if k not in ("catalog", "exposures", "store_url", "report_dir", "publish",
                            "split_traffic", "explore", "started")}  # fields added since
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    assert settings.run_key_or_digest() == f"auto-{digest.hexdigest()[:16]}"
    split = dataclasses.replace(settings, split_traffic=True)
    assert split.run_key_or_digest() != settings.run_key_or_digest()
