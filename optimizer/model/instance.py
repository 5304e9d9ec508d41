"""The validated, immutable in-memory instance (spec section 2).

Tables are pandas DataFrames with fixed columns. They are built once by
`optimizer.io` and never mutated afterwards: every consumer derives new arrays
from them (pandas copy-on-write keeps derived frames from aliasing them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

FORMAT = "offeropt/instance@1"
BUNDLE_KINDS = ("upsell", "cross_sell", "downsell", "bundle")

# Column order of every table, as in the spec's tabular form (section 5).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "items": ("id", "name", "price", "cost", "stock"),
    "bundles": ("id", "name", "kind", "price", "discounts", "exclusion_group", "min_margin_rate"),
    "bundle_items": ("bundle", "item", "qty"),
    "perks": ("bundle", "id", "cost", "lift"),
    "segments": ("id", "views", "min_offers", "max_offers", "silent", "audience", "channel",
                 "timing"),
    "responses": ("segment", "bundle", "take_rate", "baseline_rate", "price_sensitivity"),
    "audiences": ("id", "customers", "max_offers_per_customer", "max_repeats"),
    "channels": ("id", "capacity", "cost_per_impression"),
}
# Spec section 8 (version 1.1): optional tables, and segment columns that may be left out.
OPTIONAL_TABLES = ("audiences", "channels")
OPTIONAL_SEGMENT_COLUMNS = ("audience", "channel", "timing")


def empty_table(name: str) -> pd.DataFrame:
    """An optional table with no rows, in its columns' dtypes."""
    numeric = {"customers", "max_offers_per_customer", "max_repeats", "capacity",
               "cost_per_impression"}
    return pd.DataFrame({c: pd.Series(dtype=np.float64 if c in numeric else object)
                         for c in TABLE_COLUMNS[name]})


@dataclass(frozen=True)
class Policy:
    """Catalog-wide rules; every field optional with the spec's defaults."""

    discount_ladder: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2)
    min_offers_per_view: int = 1
    max_offers_per_view: int = 3
    min_margin_rate: float = 0.0
    max_discount: float | None = None
    max_discounted_share: float | None = None
    max_avg_discount: float | None = None
    promotion_budget: float | None = None
    min_aggregate_margin_rate: float | None = None
    allow_negative_uplift: bool = False
    holdout_fraction: float = 0.0

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {name: getattr(self, name) for name in self.field_names()}
        out["discount_ladder"] = list(self.discount_ladder)
        return out


@dataclass(frozen=True)
class Instance:
    """A validated catalog plan: the input of every solver backend."""

    name: str
    currency: str | None
    items: pd.DataFrame
    bundles: pd.DataFrame
    bundle_items: pd.DataFrame
    perks: pd.DataFrame
    segments: pd.DataFrame
    responses: pd.DataFrame
    policy: Policy = field(default_factory=Policy)
    warnings: tuple[str, ...] = ()
    # spec section 8: `audiences` (id, customers, max_offers_per_customer and max_repeats,
    # NaN for none) and `channels` (id, capacity NaN for none, cost_per_impression)
    audiences: pd.DataFrame = field(default_factory=lambda: empty_table("audiences"))
    channels: pd.DataFrame = field(default_factory=lambda: empty_table("channels"))

    def __post_init__(self) -> None:
        missing = [c for c in OPTIONAL_SEGMENT_COLUMNS if c not in self.segments.columns]
        if missing:  # a segment with no audience, channel or timing: None
            object.__setattr__(self, "segments",
                               self.segments.assign(**{c: None for c in missing}))

    @property
    def has_contacts(self) -> bool:
        """Whether any segment names an audience or a channel (spec section 8)."""
        segs = self.segments
        return bool(segs["audience"].notna().any() or segs["channel"].notna().any())

    def table(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = getattr(self, name)
        return frame

    def bundle_ladders(self) -> list[tuple[float, ...]]:
        """Each bundle's discount ladder, the policy's where the bundle gives none."""
        default = self.policy.discount_ladder
        return [default if d is None else tuple(d) for d in self.bundles["discounts"]]

    def bundle_prices(self) -> pd.DataFrame:
        """Per bundle (in bundle order): reference price, offer price P and unit cost C."""
        bi = self.bundle_items
        item_pos = pd.Index(self.items["id"]).get_indexer(bi["item"])
        qty = bi["qty"].to_numpy(dtype=np.float64)
        line_price = self.items["price"].to_numpy()[item_pos] * qty
        line_cost = self.items["cost"].to_numpy()[item_pos] * qty
        bundle_pos = pd.Index(self.bundles["id"]).get_indexer(bi["bundle"])
        n = len(self.bundles)
        reference = np.bincount(bundle_pos, weights=line_price, minlength=n)
        cost = np.bincount(bundle_pos, weights=line_cost, minlength=n)
        given = self.bundles["price"].to_numpy(dtype=np.float64)
        price = np.where(np.isnan(given), reference, given)
        return pd.DataFrame(
            {"reference_price": reference, "price": price, "unit_cost": cost},
            index=pd.Index(self.bundles["id"], name="bundle"),
        )
