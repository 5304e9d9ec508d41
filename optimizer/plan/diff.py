"""What changed between two plans: KPIs side by side, offers added and removed, movers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from optimizer.plan.model import OFFER_KEY, Plan

# (KPI, label) as a run report shows them; inventory utilisation is derived below
REPORTED_KPIS = (
    ("expected_incremental_margin", "Incremental margin"),
    ("expected_offer_revenue", "Offer revenue"),
    ("take_rate", "Take rate"),
    ("discounted_share", "Discounted share"),
    ("avg_discount", "Average discount"),
    ("inventory_utilisation", "Inventory utilisation"),
    ("promotion_spend", "Promotion spend"),
    ("segments_with_offers", "Segments with offers"),
    ("contact_cost", "Contact cost"),  # these two only for plans of spec section 8
    ("roi", "Return on spend"),
)
SECTION_8_KPIS = {"contact_cost", "roi"}
MOST_AUDIENCES = 10  # audiences listed in a report, nearest their cap first


def inventory_utilisation(kpis: Mapping[str, Any]) -> float | None:
    """Units used over units in stock, over every stocked item."""
    inventory = kpis.get("inventory") or {}
    stock = sum(v["stock"] for v in inventory.values())
    return None if stock <= 0 else sum(v["used"] for v in inventory.values()) / stock


def kpi_table(before: Plan | None, after: Plan) -> list[dict[str, Any]]:
    """One row per reported KPI: yesterday's plan, today's, and the relative change."""
    def values(plan: Plan | None) -> dict[str, Any]:
        kpis = (plan.kpis if plan is not None else None) or {}
        return {**kpis, "inventory_utilisation": inventory_utilisation(kpis)} if kpis else {}

    old, new = values(before), values(after)
    rows = []
    for key, label in REPORTED_KPIS:
        a, b = old.get(key), new.get(key)
        if key in SECTION_8_KPIS and key not in old and key not in new:
            continue
        change = None if a in (None, 0) or b is None else (b - a) / abs(a)
        rows.append({"kpi": key, "label": label, "yesterday": a, "today": b, "change": change})
    return rows


def contact_summary(plan: Plan) -> dict[str, Any]:
    """Spec section 8 in a report: every channel's impressions against its capacity, and
    the audiences (how many, how many at their cap, the nearest their cap)."""
    kpis = plan.kpis or {}
    audiences = kpis.get("audiences") or {}
    capped = {a: use for a, use in audiences.items() if use["cap"] is not None}
    fill = {a: use["offers_per_customer"] / use["cap"] if use["cap"] > 0 else
            float(use["offers_per_customer"] > 0) for a, use in capped.items()}
    nearest = sorted(fill, key=lambda a: -fill[a])[:MOST_AUDIENCES]
    return {
        "channels": [{"channel": c, **use} for c, use in (kpis.get("channels") or {}).items()],
        "audiences": len(audiences), "capped": len(capped),
        "at_cap": sum(f >= 1 - 1e-6 for f in fill.values()),
        "nearest_cap": [{"audience": a, **audiences[a]} for a in nearest],
    }


def plan_diff(before: Plan | None, after: Plan, top: int = 10) -> dict[str, Any]:
    """Offers added, removed and kept; segments whose offer set changed; the segments whose
    expected margin moved most."""
    new = _margins(after)
    old = _margins(before) if before is not None else new.iloc[:0]
    key = list(OFFER_KEY)
    both = old.merge(new, on=key, how="outer", suffixes=("_before", "_after"), indicator=True)
    added = both["_merge"] == "right_only"
    removed = both["_merge"] == "left_only"
    changed = both.loc[added | removed, "segment"].unique()
    per_segment = pd.DataFrame({
        "before": old.groupby("segment")["margin"].sum(),
        "after": new.groupby("segment")["margin"].sum(),
    }).fillna(0.0)
    per_segment["change"] = per_segment["after"] - per_segment["before"]
    movers = per_segment.reindex(per_segment["change"].abs().sort_values(
        ascending=False, kind="stable").index).head(top)
    return {
        "segments_changed": len(changed),
        "segments_before": int(old["segment"].nunique()),
        "segments_after": int(new["segment"].nunique()),
        "offers_added": int(added.sum()),
        "offers_removed": int(removed.sum()),
        "offers_kept": int((both["_merge"] == "both").sum()),
        "biggest_movers": [{"segment": str(s), "before": float(r["before"]),
                            "after": float(r["after"]), "change": float(r["change"])}
                           for s, r in movers.iterrows()],
    }


def _margins(plan: Plan) -> pd.DataFrame:
    frame = plan.offers.frame()
    frame = frame[[*OFFER_KEY]].assign(margin=frame["expected_incremental_margin"].fillna(0.0))
    frame["perk"] = frame["perk"].fillna("")  # a missing perk must match a missing perk
    return frame


def inventory_rows(before: Plan | None, after: Plan) -> list[dict[str, Any]]:
    """Per stocked item of today's plan: the share of its stock each plan uses."""
    def shares(plan: Plan | None) -> dict[str, float]:
        inventory = ((plan.kpis if plan is not None else None) or {}).get("inventory") or {}
        return {item: (v["used"] / v["stock"] if v["stock"] > 0 else 0.0)
                for item, v in inventory.items()}

    old, new = shares(before), shares(after)
    return [{"item": item, "yesterday": old.get(item), "today": share}
            for item, share in new.items()]
