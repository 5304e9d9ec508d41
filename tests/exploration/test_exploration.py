"""Exploration sets (spec section 9): each meets rows 1-3 and every plan with them passes the
independent check; a binding row stays within its limit; uncertain cells move more; the cost
is the optimized value less the served one; F = 0 is today's plan; bad values are refused."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.exit_codes import ExitCode
from cli.main import main
from optimizer.errors import InputError
from optimizer.exploration.mix import explore_shares
from optimizer.exploration.uncertainty import load_uncertainty, uncertainty_table
from optimizer.io import instance_from_document, load_instance
from optimizer.model.instance import Instance
from optimizer.plan.check import CheckReport, check_plan
from optimizer.plan.document import build_plan
from optimizer.plan.model import Plan
from optimizer.plan.schema import PlanDocument
from optimizer.solve import verify
from optimizer.solve.dispatch import Solution, SolveOptions, solve
from optimizer.solve.reports import CheckOutcome
from tests.api_helpers import solved_plan
from tests.constants import MERCHANDISER, ROOT
from tests.split_helpers import tight_demo

DEMO = ROOT / "instances" / "demo"


@pytest.fixture(scope="module")
def demo() -> Instance:
    return load_instance(DEMO)


def _solved(inst: Instance, **options: Any) -> tuple[Solution, dict[str, Any]]:
    chosen = SolveOptions(**options)
    solution = verify.verified(solve(inst, chosen), chosen)
    return solution, build_plan(solution).to_dict()


def _assert_sound(inst: Instance, doc: dict[str, Any], explore: float) -> None:
    """The plan passes the check; every exploration set shows the bundles of one of its
    segment's optimized sets, one variant each, some of them moved; the figures add up."""
    report = check_plan(inst, doc)
    assert report.ok, report.violations
    x = doc["exploration"]
    assert x["explore"] == explore
    assert x["cost"] == pytest.approx(x["optimized_objective"] - doc["objective"], rel=1e-9,
                                      abs=1e-6)
    assert doc["kpis"]["expected_incremental_margin"] == pytest.approx(doc["objective"])
    if not x["sets"]:
        return
    sets = doc["offer_sets"]
    views = dict(zip(inst.segments["id"], inst.segments["views"], strict=True))
    optimized: dict[str, list[dict[str, Any]]] = defaultdict(list)
    explored: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in sets:
        (explored if entry["explore"] else optimized)[entry["segment"]].append(entry)
    assert sum(len(e) for e in explored.values()) == x["sets"]
    assert len(explored) == x["segments_explored"]
    seen = 0.0
    for segment, entries in explored.items():
        assert sum(e["weight"] for e in entries) <= explore * (1 + 1e-9)
        assert sum(e["weight"] for e in entries + optimized[segment]) == pytest.approx(1.0)
        for entry in entries:
            shown = {o["bundle"]: (o["discount"], o["perk"]) for o in entry["offers"]}
            assert len(shown) == len(entry["offers"])  # one variant per bundle (row 1)
            twins = [{o["bundle"]: (o["discount"], o["perk"]) for o in e["offers"]}
                     for e in optimized[segment]]
            assert any(set(t) == set(shown) and t != shown for t in twins)  # rows 2-3 as solved
            seen += entry["weight"] * views[segment]
    assert x["views_explored"] == pytest.approx(seen)
    assert x["share_explored"] <= explore * (1 + 1e-9)


# -- the demo catalog -------------------------------------------------------------------------


@pytest.mark.parametrize("explore", [0.05, 0.5])
def test_demo_plans_with_exploration_pass_the_check(demo: Instance, explore: float) -> None:
    solution, doc = _solved(demo, explore=explore)
    assert solution.check == CheckOutcome.PASSED
    _assert_sound(demo, doc, explore)
    x = doc["exploration"]
    assert x["sets"] > 0 and x["cells_explored"] >= x["segments_explored"] > 0
    today = build_plan(solve(demo)).to_dict()  # no uncertainty given: every cell, the prior
    assert x["cells_from_prior"] == len({(o["segment"], o["bundle"]) for o in today["offers"]})
    assert x["optimized_objective"] == pytest.approx(today["objective"])
    assert "split" not in doc["solver"]  # an integral plan: the sets are exploration's
    PlanDocument.model_validate(doc)
    again = json.loads(json.dumps(doc))
    assert Plan.from_dict(again).to_dict() == again


def test_split_plans_keep_their_split_report_and_pass_the_check() -> None:
    inst = tight_demo()
    plain = build_plan(solve(inst, SolveOptions(split_traffic=True))).to_dict()
    _, doc = _solved(inst, explore=0.2, split_traffic=True)
    _assert_sound(inst, doc, 0.2)
    assert doc["solver"]["split"] == plain["solver"]["split"]  # the optimized sets only


def test_the_estimates_uncertainty_file_is_read(demo: Instance, tmp_path: Path) -> None:
    table = pd.DataFrame({"segment": demo.responses["segment"], "bundle": demo.responses["bundle"],
                          "take_rate": demo.responses["take_rate"], "take_rate_se": 0.002,
                          "price_sensitivity_se": 0.2})
    table.loc[0, "take_rate_se"] = np.nan  # no estimate: the prior for that cell
    path = tmp_path / "responses.csv"
    table.to_csv(path, index=False)
    loaded = load_uncertainty(path)
    _, doc = _solved(demo, explore=0.1, uncertainty=loaded)
    _assert_sound(demo, doc, 0.1)
    assert doc["exploration"]["cells_from_prior"] <= 1


def test_zero_explore_is_todays_plan(demo: Instance) -> None:
    timing = ("seconds", "build_seconds", "solve_seconds", "history", "plans", "steps")

    def stable(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "solver": {k: v for k, v in doc["solver"].items() if k not in timing}}

    today = build_plan(solve(demo)).to_dict()
    assert stable(build_plan(solve(demo, SolveOptions(explore=0.0))).to_dict()) == stable(today)
    assert "exploration" not in today and "offer_sets" not in today


def test_tomorrows_stability_compares_the_optimized_sets_only() -> None:
    """Exploration variants are no offers the solve chose: yesterday's keys for stability
    are those of the optimized sets, one variant per (segment, bundle)."""
    inst = load_instance(ROOT / "instances" / "demo")
    _, plain = _solved(inst)
    _, explored = _solved(inst, explore=0.3, explore_seed=1)
    with_sets = Plan.from_dict(explored)
    assert any(s.explore for s in with_sets.offer_sets or ())
    assert len(with_sets.offer_keys()) > len(Plan.from_dict(plain).offer_keys())
    keys = with_sets.optimized_offer_keys()
    assert not keys.duplicated(["segment", "bundle"]).any()
    assert keys.equals(Plan.from_dict(plain).offer_keys())


# -- every rule, on tiny random instances ------------------------------------------------------

MONEY = st.integers(min_value=2, max_value=200).map(lambda x: x * 50.0)
MAYBE = st.integers(0, 2)  # 0: a policy row, stock, cap or capacity is left out


@st.composite
def explorable_instances(draw: st.DrawFn) -> dict[str, Any]:
    """Tiny catalogs whose plans show offers with other variants (ladders of several steps,
    margin to spare, a response for every pair), under any policy row, stock, audience cap or
    channel capacity, each of which may bind."""
    items = []
    for i in range(draw(st.integers(2, 4))):
        price = draw(MONEY)
        items.append({"id": f"i{i}", "price": price, "cost": round(price * draw(st.floats(0.2, 0.7)), 2),
                      "stock": float(draw(st.integers(20, 400))) if draw(MAYBE) else None})
    bundles = []
    for b in range(draw(st.integers(1, 3))):
        chosen = draw(st.lists(st.sampled_from([i["id"] for i in items]), min_size=1, max_size=2,
                               unique=True))
        bundle: dict[str, Any] = {
            "id": f"b{b}", "kind": "cross_sell", "items": [{"item": i, "qty": 1} for i in chosen],
            "discounts": draw(st.sampled_from([[0, 0.05, 0.1, 0.15], [0, 0.1, 0.2], [0.05, 0.15]])),
            "exclusion_group": draw(st.sampled_from([None, None, "g1"]))}
        if draw(st.booleans()):
            bundle["perks"] = [{"id": "perk", "cost": draw(st.sampled_from([0.0, 50.0])),
                                "lift": draw(st.floats(-0.3, 1.0))}]
        bundles.append(bundle)
    segments = [{"id": f"s{s}", "views": float(draw(st.integers(100, 2000))),
                 "max_offers": draw(st.integers(1, 3)), "audience": "a0", "channel": "c0"}
                for s in range(draw(st.integers(1, 3)))]
    responses = [{"segment": s["id"], "bundle": b["id"], "take_rate": draw(st.floats(0.02, 0.4)),
                  "baseline_rate": draw(st.floats(0, 0.02)),
                  "price_sensitivity": draw(st.floats(0, 10))} for s in segments for b in bundles]

    def maybe(values: st.SearchStrategy[Any]) -> Any:
        return draw(values) if draw(MAYBE) == 0 else None

    policy = {"min_offers_per_view": draw(st.integers(0, 1)),
              "max_discounted_share": maybe(st.floats(0, 0.8)),
              "max_avg_discount": maybe(st.floats(0, 0.15)),
              "promotion_budget": maybe(st.floats(0, 20000)),
              "min_aggregate_margin_rate": maybe(st.floats(0, 0.6))}
    audiences = [{"id": "a0", "customers": 1000.0,
                  "max_offers_per_customer": maybe(st.floats(0.5, 4)),
                  "max_repeats": maybe(st.integers(1, 2))}]
    channels = [{"id": "c0", "capacity": maybe(st.integers(200, 4000).map(float)),
                 "cost_per_impression": draw(st.sampled_from([0.0, 1.0]))}]
    return {"format": "offeropt/instance@1", "name": "tiny", "items": items, "bundles": bundles,
            "segments": segments, "responses": responses, "policy": policy,
            "audiences": audiences, "channels": channels}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=explorable_instances(), explore=st.sampled_from([0.05, 0.3, 0.5]),
       seed=st.integers(0, 50), split=st.booleans())
def test_exploration_on_tiny_instances_meets_every_rule(doc: dict[str, Any], explore: float,
                                                        seed: int, split: bool) -> None:
    inst = instance_from_document(doc)
    solution, plan = _solved(inst, explore=explore, explore_seed=seed, split_traffic=split)
    if solution.objective is None:
        return  # infeasible: no plan, nothing to explore
    assert solution.check == CheckOutcome.PASSED, solution.message
    _assert_sound(inst, plan, explore)


# -- binding rows --------------------------------------------------------------------------------


def test_a_binding_budget_stays_within_its_limit(demo_doc: dict[str, Any]) -> None:
    spend = build_plan(solve(instance_from_document(demo_doc))).to_dict()["kpis"]["promotion_spend"]
    demo_doc["policy"]["promotion_budget"] = spend  # the optimized plan spends all of it
    inst = instance_from_document(demo_doc)
    _, doc = _solved(inst, explore=0.3)
    _assert_sound(inst, doc, 0.3)
    assert doc["kpis"]["promotion_spend"] <= spend * (1 + 1e-9)
    x = doc["exploration"]
    assert "promotion_budget" in x["held_back_by"] and x["segments_held_back"] > 0
    assert x["share_explored"] < 0.3


def test_the_mix_balances_a_binding_row_between_segments() -> None:
    """One segment's exploration frees what another's uses: both explore; where both use the
    row, neither does; half the room is half the share."""
    views, cost = np.array([1.0, 1.0]), np.zeros(2)
    no_room, room = np.array([0.0]), np.array([-np.inf])

    def shares(row: list[float], upper: float = 0.0) -> np.ndarray:
        found = explore_shares(sp.csr_matrix([row]), room, np.array([upper]), views, cost, 0.2)
        return found.share

    assert shares([1.0, -1.0]) == pytest.approx([0.2, 0.2])
    assert shares([1.0, 2.0]) == pytest.approx([0.0, 0.0])
    assert shares([1.0, -0.5]) == pytest.approx([0.1, 0.2])
    assert shares([1.0, 0.0], upper=0.05) == pytest.approx([0.05, 0.2])
    held = explore_shares(sp.csr_matrix([[1.0, 2.0]]), room, no_room, views, cost, 0.2)
    assert held.held_back.tolist() == [True]


def test_among_equal_views_the_cheapest_segments_explore() -> None:
    found = explore_shares(sp.csr_matrix([[1.0, 1.0]]), np.array([-np.inf]), np.array([0.2]),
                           np.array([1.0, 1.0]), np.array([5.0, 1.0]), 0.2)
    assert found.share == pytest.approx([0.0, 0.2])


# -- uncertainty ---------------------------------------------------------------------------------


def _twin_cells(n_segments: int) -> dict[str, Any]:
    """Segments showing two bundles alike in every way: only their uncertainty differs."""
    items = [{"id": f"i{k}", "price": 1000.0, "cost": 500.0, "stock": None} for k in (0, 1)]
    bundles = [{"id": f"b{k}", "kind": "cross_sell", "items": [{"item": f"i{k}", "qty": 1}]}
               for k in (0, 1)]
    segments = [{"id": f"s{s}", "views": 1000.0, "min_offers": 2, "max_offers": 2}
                for s in range(n_segments)]
    responses = [{"segment": f"s{s}", "bundle": f"b{k}", "take_rate": 0.05, "baseline_rate": 0.0,
                  "price_sensitivity": 4.0} for s in range(n_segments) for k in (0, 1)]
    return {"format": "offeropt/instance@1", "name": "twins", "items": items, "bundles": bundles,
            "segments": segments, "responses": responses,
            "policy": {"discount_ladder": [0, 0.05, 0.1, 0.15, 0.2]}}


def test_cells_with_higher_uncertainty_are_explored_more() -> None:
    n = 200
    inst = instance_from_document(_twin_cells(n))
    uncertain = [f"b{s % 2}" for s in range(n)]  # which bundle is uncertain alternates
    rows = [(f"s{s}", f"b{k}", f"b{k}" == uncertain[s]) for s in range(n) for k in (0, 1)]
    logit_se = np.array([1.0 if wide else 0.05 for _, _, wide in rows])
    table = pd.DataFrame({"segment": [r[0] for r in rows], "bundle": [r[1] for r in rows],
                          "take_rate": 0.05, "take_rate_se": 0.05 * 0.95 * logit_se,
                          "price_sensitivity_se": [6.0 if r[2] else 0.3 for r in rows]})
    _, doc = _solved(inst, explore=0.1, uncertainty=table, explore_seed=7)
    _assert_sound(inst, doc, 0.1)
    assert doc["exploration"]["segments_explored"] == n  # nothing holds exploration back
    plan = {(e["segment"], e["explore"]): {o["bundle"]: o["discount"] for o in e["offers"]}
            for e in doc["offer_sets"]}
    moved = {True: 0, False: 0}
    distance = {True: 0.0, False: 0.0}
    for s in range(n):
        before, after = plan[(f"s{s}", False)], plan[(f"s{s}", True)]
        for bundle in ("b0", "b1"):
            wide = bundle == uncertain[s]
            moved[wide] += before[bundle] != after[bundle]
            distance[wide] += abs(before[bundle] - after[bundle])
    # every segment explores one cell at least; the uncertain one far more often, and farther
    assert moved[True] >= 0.8 * n and moved[False] <= 0.2 * n, moved
    assert distance[True] / moved[True] > distance[False] / max(moved[False], 1), distance


def test_the_same_seed_draws_the_same_plan_another_seed_another(demo: Instance) -> None:
    first = _solved(demo, explore=0.2, explore_seed=3)[1]["offer_sets"]
    assert _solved(demo, explore=0.2, explore_seed=3)[1]["offer_sets"] == first
    others = [_solved(demo, explore=0.2, explore_seed=k)[1]["offer_sets"] for k in (4, 5, 6)]
    assert any(o != first for o in others)


# -- the fallback -------------------------------------------------------------------------------


def test_an_explored_plan_that_fails_the_check_falls_back_to_the_optimized_plan(
        demo: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    real = verify.check_plan

    def strict(inst: Instance, doc: dict[str, Any]) -> CheckReport:
        if "exploration" in doc:
            return CheckReport(("pretend: exploration broke a rule",), None, {})
        return real(inst, doc)

    monkeypatch.setattr(verify, "check_plan", strict)
    solution, doc = _solved(demo, explore=0.1)
    assert solution.check == CheckOutcome.PASSED_EARLIER
    assert "without its exploration sets" in doc["message"]
    assert "exploration" not in doc and "offer_sets" not in doc
    assert doc["objective"] == pytest.approx(build_plan(solve(demo)).objective)


# -- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.1, 0.51, float("nan"), float("inf"), True, "0.1", None])
def test_bad_explore_values_name_the_field(value: Any) -> None:
    with pytest.raises(InputError, match=r"^explore: must be a number in \[0, 0.5\], got "):
        SolveOptions(explore=value)
    with pytest.raises(InputError, match=r"^explore: must be a number"):
        SolveOptions.chosen({"explore": value})


def test_bad_seeds_and_uncertainty_tables_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^explore_seed: must be an integer, got 1\.5"):
        SolveOptions(explore=0.1, explore_seed=1.5)  # type: ignore[arg-type]
    path = tmp_path / "est.csv"
    path.write_text("segment,bundle,take_rate,take_rate_se,price_sensitivity_se\n"
                    "a,b,0.1,-0.2,\n"
                    ",b,1.5,0.1,x\n"
                    "a,b,0.1,0.1,0.2\n")
    with pytest.raises(InputError) as caught:
        load_uncertainty(path)
    assert [str(i) for i in caught.value.issues] == [
        "est.csv[line 3].segment: is required",
        "est.csv[line 3].take_rate: must be a number in (0, 1) or empty, got '1.5'",
        "est.csv[line 2].take_rate_se: must be a finite number >= 0 or empty, got '-0.2'",
        "est.csv[line 3].price_sensitivity_se: must be a finite number >= 0 or empty, got 'x'",
        "est.csv[line 4]: must be the only row of its (segment, bundle), got ('a', 'b')",
    ]
    with pytest.raises(InputError, match="uncertainty: must have a column 'take_rate_se' or "
                                         "'price_sensitivity_se'"):
        uncertainty_table(pd.DataFrame({"segment": ["a"], "bundle": ["b"]}))


# -- the command line and the API ---------------------------------------------------------------


def test_solve_explore_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    plan = tmp_path / "plan.json"
    assert main(["solve", str(DEMO), "--explore", "0.05", "-o", str(plan)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "  exploration: " in out and "of the views of segments with offers see other " \
        "variants" in out and "check: plan independently verified" in out
    assert json.loads(plan.read_text())["exploration"]["explore"] == 0.05
    assert main(["check", str(DEMO), str(plan)]) == ExitCode.OK
    with pytest.raises(SystemExit) as usage:
        main(["solve", str(DEMO), "--explore", "0.7"])
    assert usage.value.code == ExitCode.USAGE
    assert "--explore: must be in [0, 0.5], got 0.7" in capsys.readouterr().err
    assert main(["solve", str(DEMO), "--uncertainty", "x.csv"]) == ExitCode.USAGE
    assert "--uncertainty needs --explore" in capsys.readouterr().err


def test_the_api_passes_explore_and_refuses_bad_values(client: FlaskClient,
                                                       demo_doc: dict[str, Any]) -> None:
    refused = client.post("/v1/catalog-plans?explore=0.9", json=demo_doc, headers=MERCHANDISER)
    assert refused.status_code == 422
    assert [e["path"] for e in refused.get_json()["errors"]] == ["explore"]
    run = solved_plan(client, demo_doc, explore=0.05)
    assert run["options"]["explore"] == 0.05
    doc = client.get(run["links"]["plan"], headers=MERCHANDISER).get_json()
    assert doc["exploration"]["explore"] == 0.05
    assert check_plan(instance_from_document(demo_doc), doc).ok
