"""Bad served logs are refused with every broken rule named by row and column."""

from __future__ import annotations

from io import StringIO

import pandas as pd
import pytest

from optimizer.errors import InputError
from optimizer.io.fields import Locator
from optimizer.measure import measure, off_policy
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan
from tests.measure.helpers import INTEGRAL, demo, make_plan

CSV = Locator("logs", "csv")
HEADER = "segment,bundle,shown,discount,perk,views,purchases,plan_version,set,propensity\n"
GOOD = ("loyal-cart,hair-duo,1,0,,900,120,3,a,0.95\n"
        "loyal-cart,hair-duo,0,0,,50,3,3,,0.05\n")


@pytest.fixture(scope="module")
def inst() -> Instance:
    return demo()


@pytest.fixture(scope="module")
def plan(inst: Instance) -> Plan:
    return make_plan(inst, INTEGRAL)


def _frame(body: str, header: str = HEADER) -> pd.DataFrame:
    return pd.read_csv(StringIO(header + body), dtype=str, keep_default_na=False)


def _refused(inst: Instance, plan: Plan, body: str, header: str = HEADER, **kw: object) -> str:
    with pytest.raises(InputError) as caught:
        measure(_frame(body, header), inst, plan, locator=CSV, name="logs.csv", **kw)  # type: ignore[arg-type]
    return str(caught.value)


@pytest.mark.parametrize(("row", "message"), [
    ("loyal-cart,hair-duo,1,0,,900,120,3,a,0", "logs.csv[line 4].propensity: must be in (0, 1], got 0"),
    ("loyal-cart,hair-duo,1,0,,900,120,3,a,1.5", "logs.csv[line 4].propensity: must be in (0, 1], got 1.5"),
    ("loyal-cart,hair-duo,1,0,,900,120,3,a,often",
     "logs.csv[line 4].propensity: must be in (0, 1], got 'often'"),
    ("loyal-cart,hair-duo,1,0,,900,120,3,a,", "logs.csv[line 4].propensity: must be in (0, 1], got ''"),
    ("nobody,hair-duo,1,0,,900,120,3,a,0.95",
     "logs.csv[line 4].segment: must be a segment id of the instance, got 'nobody'"),
    ("loyal-cart,hair-duo,1,0,,900,120,0,a,0.95",
     "logs.csv[line 4].plan_version: must be an integer >= 1 (a published plan version), got '0'"),
    ("loyal-cart,hair-duo,1,0,,900,120,3,,0.95",
     "logs.csv[line 4].set: must name the offer set served on a shown row (shown = 1)"),
    ("loyal-cart,hair-duo,0,0,,50,3,3,b,0.05",
     "logs.csv[line 4].set: must be empty on a holdout row (shown = 0), got 'b'"),
    ("loyal-cart,laptop-care,1,0,,900,40,3,a,0.9",
     "logs.csv[line 4].propensity: must equal the propensity of the other rows of its set "
     "(0.95 in logs.csv[line 2]), got 0.9"),
    ("loyal-cart,laptop-care,1,0,,900,40,3,b,0.2",
     "logs.csv[line 2].propensity: must sum to at most 1 over the segment's offer sets and its "
     "holdout in plan version 3 (they are disjoint), got 1.2"),
    ("loyal-cart,hair-duo,1,0,,90,120,3,a,0.95",
     "logs.csv[line 4].purchases: must be <= views (90), got 120"),
])
def test_bad_rows_are_named_by_line_and_column(inst: Instance, plan: Plan, row: str,
                                               message: str) -> None:
    assert message in _refused(inst, plan, GOOD + row + "\n")


def test_every_broken_rule_is_reported_at_once(inst: Instance, plan: Plan) -> None:
    text = _refused(inst, plan, GOOD + "nobody,hair-duo,1,0,,900,120,3,a,0\n"
                    "loyal-cart,hair-duo,0,0,,50,3,3,b,0.05\n")
    assert "line 4].segment" in text and "line 4].propensity" in text and "line 5].set" in text


def test_missing_columns_are_named(inst: Instance, plan: Plan) -> None:
    text = _refused(inst, plan, "loyal-cart,hair-duo,1,0\n", header="segment,bundle,shown,discount\n")
    assert "logs.csv: must have a column 'views' (offeropt/exposures@1)" in text
    assert "logs.csv: must have a column 'purchases' (offeropt/exposures@1)" in text
    plain = _frame("loyal-cart,hair-duo,1,0,,900,120\n", header=HEADER.rsplit(",", 3)[0] + "\n")
    with pytest.raises(InputError, match=r"logs: must have a column 'set' .*\n"
                                         r"logs: must have a column 'propensity'"):
        off_policy(plain, inst, plan)


def test_versions_must_be_chosen_when_the_logs_hold_several(inst: Instance, plan: Plan) -> None:
    two = GOOD + GOOD.replace(",3,a,", ",4,a,").replace(",3,,", ",4,,")
    assert ("logs.csv.plan_version: must hold a single plan version when no version is chosen, "
            "got 2 versions (3, 4)") in _refused(inst, plan, two)
    assert "logs.csv.plan_version: must have rows of plan version 5, got versions 3, 4" in \
        _refused(inst, plan, two, version=5)
    m = measure(_frame(two), inst, plan, version=4)
    assert m.version == 4 and m.views == 900 and m.holdout_views == 50


def test_plans_naming_what_the_instance_lacks_are_refused(inst: Instance, plan: Plan) -> None:
    doc = plan.to_dict()
    doc["offer_sets"][0]["offers"][0]["bundle"] = "sku-9"
    doc["offer_sets"][1]["segment"] = "nobody"
    with pytest.raises(InputError) as caught:
        measure(_frame(GOOD), inst, Plan.from_dict(doc))
    text = str(caught.value)
    assert "plan.offer_sets[0].offers[0].bundle: must be a bundle id of the instance, got 'sku-9'" in text
    assert "plan.offer_sets[1].segment: must be a segment id of the instance, got 'nobody'" in text
    with pytest.raises(InputError, match=r"target.offer_sets\[0\].offers\[0\].bundle"):
        off_policy(_frame(GOOD), inst, Plan.from_dict(doc))


def test_logs_without_the_served_columns_are_one_set_per_segment(inst: Instance, plan: Plan) -> None:
    plain = _frame("loyal-cart,hair-duo,1,0,,900,120\nloyal-cart,laptop-care,1,0.05,,900,70\n"
                   "loyal-cart,hair-duo,0,0,,60,3\n", header=HEADER.rsplit(",", 3)[0] + "\n")
    m = measure(plain, inst, plan)
    assert m.views == 900 and m.impressions == 1800 and m.holdout_views == 60 and m.version is None
    assert any("no plan_version column" in w for w in m.warnings)
