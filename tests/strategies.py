"""Hypothesis strategies for tiny instances that brute force can enumerate."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

MONEY = st.integers(min_value=1, max_value=200).map(lambda x: x * 50.0)


@st.composite
def tiny_instances(draw: st.DrawFn, max_segments: int = 2, max_bundles: int = 3) -> dict[str, Any]:
    n_items = draw(st.integers(2, 4))
    items = []
    for i in range(n_items):
        price = draw(MONEY)
        items.append({"id": f"i{i}", "price": price,
                      "cost": round(price * draw(st.floats(0.2, 1.1)), 2),
                      "stock": draw(st.none() | st.integers(0, 400).map(float))})
    bundles = []
    for b in range(draw(st.integers(1, max_bundles))):
        chosen = draw(st.lists(st.sampled_from([i["id"] for i in items]), min_size=1, max_size=2,
                               unique=True))
        lines = [{"item": it, "qty": draw(st.integers(1, 2))} for it in chosen]
        ref = sum(next(i["price"] for i in items if i["id"] == ln["item"]) * ln["qty"]
                  for ln in lines)
        bundle: dict[str, Any] = {
            "id": f"b{b}", "kind": draw(st.sampled_from(["upsell", "cross_sell", "downsell",
                                                          "bundle"])),
            "items": lines,
            "discounts": draw(st.sampled_from([[0], [0, 0.1], [0, 0.2], [0.05, 0.15]])),
            "exclusion_group": draw(st.sampled_from([None, None, "g1", "g2"])),
        }
        if draw(st.booleans()):
            bundle["price"] = round(ref * draw(st.floats(0.7, 1.0)), 2)
        if draw(st.integers(0, 3)) == 0:
            bundle["min_margin_rate"] = draw(st.sampled_from([0.1, 0.3]))
        if draw(st.booleans()):
            bundle["perks"] = [{"id": "perk", "cost": draw(st.sampled_from([0.0, 50.0, 300.0])),
                                "lift": draw(st.floats(-0.5, 1.5))}]
        bundles.append(bundle)
    segments = []
    for s in range(draw(st.integers(1, max_segments))):
        seg: dict[str, Any] = {"id": f"s{s}", "views": float(draw(st.integers(0, 2000)))}
        if draw(st.integers(0, 3)) == 0:
            lo = draw(st.integers(0, 2))
            seg["min_offers"], seg["max_offers"] = lo, draw(st.integers(lo, 3))
        if draw(st.integers(0, 7)) == 0:
            seg["silent"] = True
        segments.append(seg)
    responses = [
        {"segment": s["id"], "bundle": b["id"], "take_rate": draw(st.floats(0.01, 0.6)),
         "baseline_rate": draw(st.sampled_from([0.0, 0.0, 0.02, 0.1, 0.4])),
         "price_sensitivity": draw(st.floats(0, 10))}
        for s in segments for b in bundles if draw(st.integers(0, 4)) > 0
    ]
    lo = draw(st.integers(0, 2))
    policy = {
        "discount_ladder": [0, 0.1, 0.2], "min_offers_per_view": lo,
        "max_offers_per_view": draw(st.integers(max(lo, 1), 3)),
        "min_margin_rate": draw(st.sampled_from([0.0, 0.05, 0.2])),
        "max_discount": draw(st.sampled_from([None, 0.1])),
        "max_discounted_share": draw(st.none() | st.floats(0, 0.8)),
        "max_avg_discount": draw(st.none() | st.floats(0, 0.15)),
        "promotion_budget": draw(st.none() | st.floats(0, 20000)),
        "min_aggregate_margin_rate": draw(st.none() | st.floats(0, 0.6)),
        "allow_negative_uplift": draw(st.booleans()),
    }
    return {"format": "offeropt/instance@1", "name": "tiny", "items": items, "bundles": bundles,
            "segments": segments, "responses": responses, "policy": policy}


@st.composite
def tiny_contact_instances(draw: st.DrawFn) -> dict[str, Any]:
    """Tiny instances with spec section 8: segments in audiences with frequency and repeat
    caps, met in channels with capacities and contact costs (any of them may be absent)."""
    doc = draw(tiny_instances(max_segments=3, max_bundles=2))
    audiences = [{"id": f"a{k}", "customers": float(draw(st.integers(100, 3000))),
                  "max_offers_per_customer": draw(st.none() | st.floats(0, 3)),
                  "max_repeats": draw(st.none() | st.integers(1, 2))}
                 for k in range(draw(st.integers(1, 2)))]
    channels = [{"id": f"c{k}", "capacity": draw(st.none() | st.integers(0, 4000).map(float)),
                 "cost_per_impression": draw(st.sampled_from([0.0, 0.5, 2.0, 20.0]))}
                for k in range(draw(st.integers(1, 2)))]
    for seg in doc["segments"]:
        seg["audience"] = draw(st.none() | st.sampled_from([a["id"] for a in audiences]))
        seg["channel"] = draw(st.none() | st.sampled_from([c["id"] for c in channels]))
        seg["timing"] = draw(st.sampled_from(["cart", "email", None]))
    return {**doc, "audiences": audiences, "channels": channels}
