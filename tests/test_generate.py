"""The generator is seeded, valid, and shaped like the issue asks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.candidates import expand
from optimizer.generate import generate
from optimizer.io import load_instance, write_instance


def test_same_seed_same_instance_and_different_seed_differs() -> None:
    a, b, c = generate(50, seed=7), generate(50, seed=7), generate(50, seed=8)
    pd.testing.assert_frame_equal(a.responses, b.responses)
    assert not a.responses["take_rate"].equals(c.responses["take_rate"])


def test_generated_instance_passes_validation(tmp_path: Path) -> None:
    inst = generate(120, seed=3, responses_per_segment=10)
    write_instance(inst, tmp_path / "g", "parquet")
    loaded = load_instance(tmp_path / "g")
    assert len(loaded.responses) == 1200
    assert loaded.responses.groupby("segment").size().eq(10).all()


def test_realistic_structure() -> None:
    inst = generate(2000, seed=11)
    items, resp = inst.items, inst.responses
    ratio = items["cost"] / items["price"]
    assert ratio.between(0.44, 0.81).all()
    log_price = np.log(items["price"])
    assert 0.6 < log_price.std() < 1.6  # log-normal spread
    assert set(inst.bundles["kind"]) == {"cross_sell", "upsell", "downsell", "bundle"}
    assert inst.bundles["exclusion_group"].notna().sum() > 0
    assert len(inst.perks) > 0
    assert resp["take_rate"].between(0.0009, 0.41).all()
    negative = (resp["baseline_rate"] > resp["take_rate"]).mean()
    assert 0.03 < negative < 0.15
    views = np.sort(inst.segments["views"].to_numpy())[::-1]
    assert views[0] > 50 * np.median(views)  # heavy head: Zipf
    assert items["stock"].notna().any() and items["stock"].isna().any()


def test_some_stock_is_tight() -> None:
    inst = generate(300, seed=5)
    cands = expand(inst)
    # Demand if every candidate variant at list price were shown, per stocked item.
    lines = inst.bundle_items.merge(inst.items[["id", "stock"]], left_on="item", right_on="id")
    lines = lines[lines["stock"].notna()]
    bundle_ids = inst.bundles["id"].to_numpy()
    takes = pd.Series(cands.takes[cands.discount == 0], index=bundle_ids[cands.bundle[
        cands.discount == 0]]).groupby(level=0).max()
    demand = (lines["qty"] * takes.reindex(lines["bundle"]).fillna(0).to_numpy()).groupby(
        lines["item"].to_numpy()).sum()
    stock = inst.items.set_index("id")["stock"].reindex(demand.index)
    assert (demand > stock).any()
