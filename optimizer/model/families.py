"""The constraint families of spec section 3, as tags on rows."""

from __future__ import annotations

from enum import IntEnum


class Family(IntEnum):
    TAKES = 0  # a model row: a variant's expected takes, linking candidates to coupling rows
    BUNDLE_ONCE = 1
    EXCLUSION_GROUP = 2
    OFFERS_PER_VIEW = 3
    INVENTORY = 4
    DISCOUNTED_SHARE = 5
    AVG_DISCOUNT = 6
    PROMOTION_BUDGET = 7
    AGGREGATE_MARGIN = 8

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Family.TAKES: "expected takes per variant",
    Family.BUNDLE_ONCE: "one variant per bundle",
    Family.EXCLUSION_GROUP: "one bundle per exclusion group",
    Family.OFFERS_PER_VIEW: "offers per view",
    Family.INVENTORY: "inventory",
    Family.DISCOUNTED_SHARE: "max_discounted_share",
    Family.AVG_DISCOUNT: "max_avg_discount",
    Family.PROMOTION_BUDGET: "promotion_budget",
    Family.AGGREGATE_MARGIN: "min_aggregate_margin_rate",
}
