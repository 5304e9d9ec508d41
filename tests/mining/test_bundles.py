"""From a transaction log to mined bundles, RFM segments and a solved plan, end to end."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cli.main import main
from optimizer.errors import InputError
from optimizer.io import instance_from_document, load_instance
from optimizer.io.json_form import instance_to_document
from optimizer.mining.bundles import GROUP_PREFIX, BundleOptions, write_bundles
from optimizer.mining.mine import Thresholds, mine
from optimizer.model.instance import Instance
from optimizer.plan.check import evaluate_plan
from optimizer.plan.document import build_plan
from optimizer.solve.dispatch import SolveOptions, solve
from tests.mining.helpers import baskets_of

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "instances" / "demo"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """baskets over the demo's items -> segment -> mine --write-bundles, as a user runs it."""
    tmp = tmp_path_factory.mktemp("pipeline")
    paths = {name: tmp / name for name in ("lines.csv", "orders.csv", "customers.csv",
                                           "rules.csv", "mined.json")}
    assert main(["baskets", "--catalog", str(DEMO), "--orders", "3000", "--seed", "2",
                 "--mean-size", "2", "--customers", "120", "--planted", "4",
                 "-o", str(paths["lines.csv"]), "--per-order", str(paths["orders.csv"])]) == 0
    assert main(["segment", str(paths["orders.csv"]), "--assignments",
                 str(paths["customers.csv"]), "--frequency", "40,30,20,10",
                 "-o", str(tmp / "segments.csv")]) == 0
    assert main(["mine", str(paths["lines.csv"]), "--min-support", "0.02", "--min-confidence",
                 "0.3", "--min-lift", "1.2", "-o", str(paths["rules.csv"]), "--write-bundles",
                 str(DEMO), "--segments", str(paths["customers.csv"]), "--add-segments",
                 "--baseline-share", "0.5", "--bundle-items", "3",
                 "--output-catalog", str(paths["mined.json"])]) == 0
    return paths


def test_bundles_are_priced_grouped_and_valid(pipeline: dict[str, Path]) -> None:
    demo, inst = load_instance(DEMO), load_instance(pipeline["mined.json"])  # both validate
    new = inst.bundles[~inst.bundles["id"].isin(demo.bundles["id"])]
    assert 3 <= len(new) <= 20
    assert (new["kind"] == "cross_sell").all()
    assert new["price"].isna().all()  # the reference price is the price
    prices = inst.items.set_index("id")["price"]
    ref = inst.bundle_prices()["reference_price"]
    for bundle in new["id"]:
        items = inst.bundle_items.loc[inst.bundle_items["bundle"] == bundle, "item"]
        assert ref[bundle] == prices[items].sum()
        assert bundle == "+".join(items)  # the anchor first
    anchors = new["id"].str.split("+").str[0]
    shared = anchors.map(anchors.value_counts()) > 1
    assert (new["exclusion_group"].isna() == ~shared).all()
    assert (new.loc[shared.to_numpy(), "exclusion_group"] == GROUP_PREFIX + anchors[shared]).all()
    # demo's own tables are untouched
    pd.testing.assert_frame_equal(inst.bundles.iloc[:len(demo.bundles)].reset_index(drop=True),
                                  demo.bundles.reset_index(drop=True))


def test_take_rates_are_each_segments_confidence(pipeline: dict[str, Path]) -> None:
    inst = load_instance(pipeline["mined.json"])
    lines = pd.read_csv(pipeline["lines.csv"], dtype=str)
    customers = pd.read_csv(pipeline["customers.csv"], dtype=str).set_index("customer")["segment"]
    rules = pd.read_csv(pipeline["rules.csv"])
    baskets = lines.groupby("order_id").agg(items=("item_id", set), customer=("customer_id", "first"))
    baskets["segment"] = baskets["customer"].map(customers)
    new = inst.responses[inst.responses["bundle"].str.contains("+", regex=False)]
    assert len(new) > 0 and new["segment"].str.fullmatch(r"rfm\d{3}").all()
    for r in new.sample(10, random_state=1).itertuples():
        items = r.bundle.split("+")
        anchor, others = items[0], ";".join(sorted(items[1:]))
        conf = rules.loc[(rules["antecedents"] == anchor) & (rules["consequents"] == others),
                         "confidence"].item()
        mine_ = baskets[baskets["segment"] == r.segment]
        n_anchor = mine_["items"].map(lambda s, a=anchor: a in s).sum()
        n_all = mine_["items"].map(lambda s, i=set(items): i <= s).sum()
        expected = np.clip((n_all + 10 * conf) / (n_anchor + 10), 1e-4, 1 - 1e-4)
        assert r.take_rate == pytest.approx(expected, rel=1e-12)
        assert r.baseline_rate == pytest.approx(0.5 * expected, rel=1e-12)
    added = inst.segments[inst.segments["id"].str.fullmatch(r"rfm\d{3}")]
    orders = baskets["segment"].value_counts()
    assert (added.set_index("id")["views"] == orders[added["id"]]).all()


def test_the_mined_catalog_solves_and_offers_mined_bundles(pipeline: dict[str, Path]) -> None:
    inst = load_instance(pipeline["mined.json"])
    solution = solve(inst, SolveOptions(time_limit=30, gap=1e-2))
    assert solution.status.value in ("optimal", "feasible")
    plan = build_plan(solution).to_dict()
    assert evaluate_plan(inst, plan).violations == ()
    assert any("+" in offer["bundle"] for offer in plan["offers"])


@functools.cache
def _demo() -> Instance:
    return load_instance(DEMO)


def _catalog(extra_items: list[str], extra_bundles: tuple[dict[str, Any], ...] = ()) -> Instance:
    doc = instance_to_document(_demo())
    doc["items"] += [{"id": i, "name": "", "price": 100 + k, "cost": 50, "stock": 1000}
                     for k, i in enumerate(extra_items)]
    doc["bundles"] += list(extra_bundles)
    return instance_from_document(doc)


def _unescape(part: str) -> str:
    return part.replace("%2B", "+").replace("%7E", "~").replace("%25", "%")


def test_ids_of_items_with_a_plus_cannot_collide() -> None:
    """{a+b, c} and {a, b+c} were both 'a+b+c' once: the '+' of an item id is escaped."""
    items = ["a+b", "c", "a", "b+c", "50%", "x~1"]
    orders = [{"a+b", "c"}] * 6 + [{"a", "b+c"}] * 5 + [{"50%", "x~1"}] * 4 + [{"c"}, {"a"}]
    mined = mine(baskets_of(orders), Thresholds(0.1, 0.5, 1.0, 2))
    result = write_bundles(_catalog(items), mined, BundleOptions(max_bundles=20))
    ids = list(result.bundles["id"])
    assert len(ids) == len(set(ids)) == 3
    for bundle, members in zip(ids, result.bundles["items"], strict=True):
        assert [_unescape(p) for p in bundle.split("+")] == members  # reversible, anchor first
        assert "~" not in bundle
    assert {"a%2Bb+c", "c+a%2Bb"} & set(ids) and {"a+b%2Bc", "b%2Bc+a"} & set(ids)
    assert {"50%25+x%7E1", "x%7E1+50%25"} & set(ids)
    assert set(ids) <= set(result.instance.bundles["id"])  # and the instance validated


def test_ids_never_clash_with_the_catalogs() -> None:
    """A catalog bundle that has the mined id but other items: the mined id gets a stable
    hash; one with the same items is this bundle mined before: an input error."""
    orders = [{"mouse-m2", "sleeve-14"}] * 5 + [{"mouse-m2"}]
    mined = mine(baskets_of(orders), Thresholds(0.1, 0.5, 0.0, 2))
    mined_before = write_bundles(_demo(), mined)
    plain = mined_before.bundles["id"].item()
    assert plain == "sleeve-14+mouse-m2"
    squatter = {"id": plain, "name": "not that", "kind": "bundle",
                "items": [{"item": "laptop-14", "qty": 1}]}
    hashed = write_bundles(_catalog([], (squatter,)), mined)
    digest = hashlib.sha256(plain.encode()).hexdigest()[:8]  # the same from run to run
    assert hashed.bundles["id"].item() == f"{plain}~{digest}"
    assert f"{plain}~{digest}" in set(hashed.instance.bundles["id"])
    with pytest.raises(InputError) as before:
        write_bundles(mined_before.instance, mined)
    assert str(before.value) == ("--write-bundles: must be a catalog without the mined bundles "
                                 "(it holds them, mined before: mine into the original catalog), "
                                 "got ['sleeve-14+mouse-m2']")
