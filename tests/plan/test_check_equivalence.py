"""The columnar checker gives the verdicts and recomputed values of the former one.

`tests/check_reference.py` is the former checker, which derived every variant of every
response; it is the oracle here, on the shipped instances and on plans broken one rule at a
time. Plans are built from the oracle's own variants (the best candidate per slot, as many as
a segment may show), so they do not depend on the solver.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from optimizer.io import load_instance
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan, evaluate_plan, plan_issues
from tests import check_reference as reference

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("demo", "small.json", "medium.json")
Plan = dict[str, Any]


@functools.cache
def _shipped(name: str) -> tuple[Instance, pd.DataFrame, Plan]:
    """A shipped instance, its variants by the oracle, and a greedy plan (not to be changed)."""
    inst = _version_1(load_instance(ROOT / "instances" / name))
    variants = reference._variants(inst)
    return inst, variants, _greedy_plan(inst, variants)


def _version_1(inst: Instance) -> Instance:
    """The instance without spec section 8, which the former checker predates (its own
    tests are in `test_check_contacts.py`)."""
    return dataclasses.replace(inst, audiences=inst.audiences.iloc[:0],
                               channels=inst.channels.iloc[:0],
                               segments=inst.segments.assign(audience=None, channel=None))


def _greedy_plan(inst: Instance, variants: pd.DataFrame) -> Plan:
    """Per segment the best candidate of each slot, best first, as many as it may show."""
    v = variants[variants["candidate"]].sort_values("value", ascending=False, kind="stable")
    v = v.drop_duplicates(["segment", "slot"])
    limits = reference._offer_limits(inst, variants)
    v = v[v.groupby("segment").cumcount() < v["segment"].map(lambda s: limits[s][1])]
    offers = [{"segment": r.segment, "bundle": r.bundle, "discount": float(r.discount),
               "perk": None if pd.isna(r.perk) else r.perk, "share": 1.0,
               "reference_price": float(r.ref), "price": float(r.r),
               "expected_takes": float(r.views * r.prob), "expected_incremental_margin": float(r.value)}
              for r in v.itertuples()]
    plan: Plan = {"format": "offeropt/plan@1", "instance": inst.name, "status": "feasible",
                  "objective": None, "bound": None, "gap": None, "offers": offers, "kpis": None}
    report = reference.check_plan(inst, plan)
    plan.update(objective=report.objective, kpis=report.kpis)
    return plan


def _same(inst: Instance, plan: Plan, evaluate: bool = False) -> None:
    ours, theirs = (evaluate_plan(inst, plan), reference.evaluate_plan(inst, plan)) if evaluate \
        else (check_plan(inst, plan), reference.check_plan(inst, plan))
    assert ours.violations == theirs.violations
    assert _approx(ours.objective) == theirs.objective
    assert _approx(ours.kpis) == theirs.kpis


def _approx(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isnan(value):
        return pytest.approx(value, rel=1e-12, abs=1e-9)
    return value


@pytest.mark.parametrize("where", SHIPPED)
def test_greedy_plans_of_the_shipped_instances(where: str) -> None:
    """The greedy plan breaks stock and policy rows; without them it is sound."""
    inst, _, plan = _shipped(where)
    assert plan["offers"]
    assert not check_plan(inst, plan).ok
    _same(inst, plan)
    _same(inst, plan, evaluate=True)
    loose = dataclasses.replace(
        inst, items=inst.items.assign(stock=float("nan")),
        policy=dataclasses.replace(inst.policy, max_discounted_share=None, max_avg_discount=None,
                                   promotion_budget=None, min_aggregate_margin_rate=None))
    loose_plan = dict(plan, kpis=dict(plan["kpis"], inventory={}))
    assert check_plan(loose, loose_plan).ok, check_plan(loose, loose_plan).violations
    _same(loose, loose_plan)


# -- one broken rule at a time: (name, a message it gives, change the plan, change the instance) --

Change = Callable[[Instance, pd.DataFrame, Plan], None]


def _offer(**fields: Any) -> Change:
    return lambda inst, v, p: p["offers"][0].update(fields)


def _drop(field: str) -> Change:
    return lambda inst, v, p: p["offers"][0].pop(field)


def _record(row: Any, share: float = 1.0) -> dict[str, Any]:
    return {"segment": row.segment, "bundle": row.bundle, "discount": float(row.discount),
            "perk": None if pd.isna(row.perk) else row.perk, "share": share,
            "reference_price": float(row.ref), "price": float(row.r),
            "expected_takes": share * float(row.views * row.prob),
            "expected_incremental_margin": share * float(row.value)}


def _second_variant(inst: Instance, v: pd.DataFrame, p: Plan) -> None:
    """Rule 1: another variant of an offered (segment, bundle)."""
    o = p["offers"][0]
    same = v[(v["segment"] == o["segment"]) & (v["bundle"] == o["bundle"])
             & (v["discount"] != o["discount"])]
    p["offers"].append(_record(next(same.itertuples())))


def _second_of_group(inst: Instance, v: pd.DataFrame, p: Plan) -> None:
    """Rule 2: another bundle of the exclusion group of an offered bundle."""
    offered = pd.DataFrame(p["offers"])[["segment", "bundle"]]
    grouped = v[v["exclusion_group"].notna() & v["candidate"]].merge(
        offered.rename(columns={"bundle": "shown"}), on="segment")
    group_of = dict(zip(inst.bundles["id"], inst.bundles["exclusion_group"], strict=True))
    rival = grouped[(grouped["bundle"] != grouped["shown"])
                    & (grouped["shown"].map(group_of) == grouped["exclusion_group"])]
    p["offers"].append(_record(next(rival.itertuples())))


def _too_many(inst: Instance, v: pd.DataFrame, p: Plan) -> None:
    """Rule 3: candidates of every slot of the first segment, beyond its maximum."""
    s = p["offers"][0]["segment"]
    shown = {o["bundle"] for o in p["offers"] if o["segment"] == s}
    more = v[(v["segment"] == s) & v["candidate"] & ~v["bundle"].isin(shown)].drop_duplicates("slot")
    p["offers"] += [_record(r) for r in more.itertuples()]


def _none_for(inst: Instance, v: pd.DataFrame, p: Plan) -> None:
    """Rule 3: no offer at all for a segment that has candidates."""
    s = p["offers"][0]["segment"]
    p["offers"] = [o for o in p["offers"] if o["segment"] != s]


def _not_candidate(inst: Instance, v: pd.DataFrame, p: Plan) -> None:
    """A variant that is no candidate (negative uplift, margin floor, max_discount)."""
    p["offers"].append(_record(next(v[~v["candidate"] & ~v["silent"]].itertuples())))


def _no_response(inst: Instance, v: pd.DataFrame, p: Plan) -> None:
    o = p["offers"][0]
    has = set(v.loc[v["segment"] == o["segment"], "bundle"])
    o["bundle"] = next(b for b in inst.bundles["id"] if b not in has)


def _policy(**fields: Any) -> Callable[[Instance], Instance]:
    return lambda inst: dataclasses.replace(inst, policy=dataclasses.replace(inst.policy, **fields))


def _scarce(inst: Instance) -> Instance:
    """Rule 4: every stocked item down to one unit."""
    items = inst.items.assign(stock=inst.items["stock"].where(inst.items["stock"].isna(), 1.0))
    return dataclasses.replace(inst, items=items)


def _kpi(name: str, value: Any) -> Change:
    return lambda inst, v, p: p["kpis"].update({name: value})


def _plan(**fields: Any) -> Change:
    return lambda inst, v, p: p.update(fields)


def _inventory_claim(inst: Instance, v: pd.DataFrame, p: Plan) -> None:
    item = next(iter(p["kpis"]["inventory"]))
    p["kpis"]["inventory"][item]["used"] += 1000.0


def _nothing(inst: Instance, v: pd.DataFrame, p: Plan) -> None:
    pass


BROKEN: list[tuple[str, str, Change, Callable[[Instance], Instance] | None]] = [
    ("one variant per bundle", 'at most one variant', _second_variant, None),
    ("one bundle per exclusion group", 'at most one bundle, got', _second_of_group, None),
    ("too many offers", 'must show between', _too_many, None),
    ("too few offers", 'offers, got 0', _none_for, None),
    ("inventory", 'must be <= stock 1,', _nothing, _scarce),
    ("discounted share", 'max_discounted_share: must be <= 0.0', _nothing, _policy(max_discounted_share=0.0)),
    ("average discount", 'max_avg_discount: must be <= 0.0', _nothing, _policy(max_avg_discount=0.0)),
    ("promotion budget", 'promotion_budget: must be <= 1,', _nothing, _policy(promotion_budget=1.0)),
    ("aggregate margin rate", 'min_aggregate_margin_rate: must be >= 0.99', _nothing,
     _policy(min_aggregate_margin_rate=0.99)),
    ("segments silent", 'must be a candidate', _nothing, lambda inst: dataclasses.replace(
        inst, segments=inst.segments.assign(silent=True))),
    ("no candidate at all", 'must be a candidate', _nothing, _policy(min_margin_rate=0.99)),
    ("not a candidate", 'must be a candidate', _not_candidate, None),
    ("discount off the ladder", 'must be a variant', _offer(discount=0.33), None),
    ("unknown perk", 'must be a variant', _offer(perk="jetpack"), None),
    ("unknown segment", 'must be a variant', _offer(segment="nobody"), None),
    ("no response", 'must be a variant', _no_response, None),
    ("segment missing", 'must be a variant', _drop("segment"), None),
    ("share above 1", 'share: must be in (0, 1], got 1.5', _offer(share=1.5), None),
    ("share zero", 'share: must be in (0, 1], got 0', _offer(share=0), None),
    ("share missing", 'share: must be in (0, 1], got nan', _drop("share"), None),
    ("share halved", 'expected_takes: must be', lambda inst, v, p: p["offers"][0].update(share=0.5), None),
    ("price claimed wrong", '].price: must be', _offer(price=1.0), None),
    ("reference price claimed wrong", 'reference_price: must be', _offer(reference_price=1.0), None),
    ("takes claimed as text", "got 'many'", _offer(expected_takes="many"), None),
    ("margin claim missing", 'expected_incremental_margin: must be',
     _drop("expected_incremental_margin"), None),
    ("objective", 'objective: must be', lambda inst, v, p: p.update(objective=p["objective"] * 1.01), None),
    ("bound below the objective", 'bound: must be >=',
     lambda inst, v, p: p.update(bound=p["objective"] * 0.9), None),
    ("gap", 'gap: must be', lambda inst, v, p: p.update(bound=p["objective"] * 1.1, gap=0.5), None),
    ("kpi", 'kpis.take_rate', _kpi("take_rate", 0.9), None),
    ("kpi missing", 'kpis.avg_discount', lambda inst, v, p: p["kpis"].pop("avg_discount"), None),
    ("inventory kpi", 'kpis.inventory.', _inventory_claim, None),
    ("kpis null", 'kpis.expected_takes', _plan(kpis=None), None),
    ("status with offers", 'must have no offers', _plan(status="infeasible"), None),
    ("format and instance", 'format: must be', _plan(format="offeropt/plan@2", instance="other"), None),
    ("no offers", 'offers, got 0', _plan(offers=[]), None),
    ("wrong JSON types", "must be a number in (0, 1], got '1'", lambda inst, v, p: p["offers"].__setitem__(
        slice(0, 2), [dict(p["offers"][0], share="1"), dict(p["offers"][1], segment=5)]), None),
]


# every case on demo; on the larger instances, where the oracle is slower, the rules 1-7
RULES = ("one variant per bundle", "one bundle per exclusion group", "too many offers",
         "too few offers", "inventory", "discounted share", "average discount", "promotion budget",
         "aggregate margin rate", "not a candidate")
CASES = [("demo", *case) for case in BROKEN] + [
    (where, *case) for where in ("small.json", "medium.json") for case in BROKEN
    if case[0] in (RULES if where == "small.json" else RULES[3:5])]


@pytest.mark.parametrize(("where", "name", "message", "change", "instance"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_broken_plans(where: str, name: str, message: str, change: Change,
                      instance: Callable[[Instance], Instance] | None) -> None:
    inst, variants, plan = _shipped(where)
    plan = copy.deepcopy(plan)
    change(inst, variants, plan)
    if instance is not None:
        inst = instance(inst)
    report = check_plan(inst, plan)
    assert any(message in v for v in report.violations), report.violations
    _same(inst, plan)
    if not plan_issues(plan):
        _same(inst, plan, evaluate=True)


def test_broken_split_plans() -> None:
    """Every tampering of the split-traffic tests, on the split demo plan."""
    from tests.plan.test_check import SPLIT_TAMPERING
    from tests.plans import plan_document
    from tests.split_helpers import split_solution, tight_demo

    inst = tight_demo()
    plan = plan_document(split_solution(inst))
    _same(inst, plan)
    for _, tamper, _ in SPLIT_TAMPERING:
        broken = copy.deepcopy(plan)
        tamper(broken)
        _same(inst, broken)
    for change in (lambda e: e["offers"].append(7), lambda e: e["offers"][0].update(bundle=["x"]),
                   lambda e: e["offers"][0].update(discount="0.1"),
                   lambda e: e["offers"][0].update(perk=3), lambda e: e.update(set=None, weight=None),
                   lambda e: e["offers"].append({"bundle": None, "discount": None, "perk": None}),
                   lambda e: e["offers"].append({"bundle": "zzz", "discount": True}),
                   lambda e: e["offers"].append(dict(e["offers"][0], discount=math.nan)),
                   lambda e: e["offers"].append(dict(e["offers"][0])), lambda e: e.update(offers=[{}]),
                   lambda e: e["offers"].append(dict(e["offers"][0], discount=e["offers"][0]["discount"]
                                                     + 1e-12))):
        broken = copy.deepcopy(plan)
        change(broken["offer_sets"][0])
        _same(inst, broken)
    broken = copy.deepcopy(plan)
    broken["offer_sets"] += [{"segment": ["x"], "set": 3, "weight": "1", "explore": None, "offers": None},
                             {"segment": plan["offer_sets"][0]["segment"], "offers": [1, 2]}, {}]
    broken["offers"].append({"segment": plan["offer_sets"][0]["segment"], "bundle": "zzz", "discount": 1,
                             "perk": None, "share": 0.3})
    _same(inst, broken)


@pytest.mark.parametrize("where", ["demo", "small.json"])
def test_slots_counted_in_blocks(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan with no offers asks for every segment's slots; counted a few variants a block."""
    from optimizer.plan import check_catalog

    monkeypatch.setattr(check_catalog, "BLOCK", 7)
    inst, _, plan = _shipped(where)
    _same(inst, dict(plan, offers=[]))
    loose = dataclasses.replace(inst, policy=dataclasses.replace(inst.policy, allow_negative_uplift=True))
    _same(loose, dict(plan, offers=[]))


def test_the_checker_imports_nothing_of_the_solver() -> None:
    """Its own modules, the instance model and the error type: no solver module at all."""
    import subprocess
    import sys

    code = ("import sys, optimizer.plan.check; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('optimizer'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.split()
    assert set(loaded) == {"optimizer", "optimizer.errors", "optimizer.model", "optimizer.model.instance",
                           "optimizer.plan", "optimizer.plan.check", "optimizer.plan.check_catalog",
                           "optimizer.plan.check_offers", "optimizer.plan.check_sets",
                           "optimizer.plan.columns", "optimizer.plan.model"}


# -- where the checker differs from the former one, on purpose ------------------------------------


def test_infinite_claims_are_refused() -> None:
    """JSON readers take `Infinity`: the former checker found inf within 1e-6 of any figure."""
    inst, _, plan = _shipped("demo")
    plan = copy.deepcopy(plan)
    plan["offers"][1]["price"] = math.inf
    plan["objective"] = math.inf
    plan["kpis"]["take_rate"] = -math.inf
    plan["kpis"]["inventory"][next(iter(plan["kpis"]["inventory"]))]["used"] = math.inf
    violations = check_plan(inst, plan).violations
    for message in ("offers[1].price: must be", "objective: must be", "kpis.take_rate: must be",
                    "kpis.inventory."):
        assert any(v.startswith(message) for v in violations), (message, violations)


def test_integers_too_large_for_a_float_are_broken_rules() -> None:
    """The former checker raised OverflowError on them; they are infinite, so no figure."""
    from tests.plans import plan_document
    from tests.split_helpers import split_solution, tight_demo

    inst, _, plan = _shipped("demo")
    plan = copy.deepcopy(plan)
    plan["offers"][0]["share"] = 10 ** 400
    plan["offers"][1]["expected_takes"] = -(10 ** 400)
    violations = check_plan(inst, plan).violations
    assert any(v.startswith("offers[0].share: must be in (0, 1], got 1000") for v in violations)
    assert any(v.startswith("offers[1].expected_takes: must be") for v in violations)
    split = tight_demo()
    doc = plan_document(split_solution(split))
    doc["offer_sets"][0]["weight"] = 10 ** 400
    doc["offer_sets"][1]["offers"][0]["discount"] = 10 ** 400
    violations = check_plan(split, doc).violations
    assert any(v.startswith("offer_sets[0].weight: must be in (0, 1]") for v in violations)
    assert any(v.startswith("offer_sets[1].offers[0]: must be a candidate") for v in violations)

