"""The constraint families of spec section 3, as tags on rows."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from optimizer.model.instance import Instance


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
    # spec section 8: audiences' caps, written on the candidates; a channel's capacity,
    # on its impressions column
    FREQUENCY_CAP = 9
    REPEAT_CAP = 10
    CHANNEL_CAPACITY = 11

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
    Family.FREQUENCY_CAP: "max_offers_per_customer",
    Family.REPEAT_CAP: "max_repeats",
    Family.CHANNEL_CAPACITY: "channel capacity",
}

ON_USAGE = (Family.INVENTORY, Family.DISCOUNTED_SHARE, Family.AVG_DISCOUNT,
            Family.PROMOTION_BUDGET, Family.AGGREGATE_MARGIN, Family.CHANNEL_CAPACITY)
ON_CANDIDATES = (Family.FREQUENCY_CAP, Family.REPEAT_CAP)


def row_subject(instance: Instance, family: Family, subject: int) -> dict[str, str]:
    """What a row is about, by id: the item of an inventory row; the audience (and bundle)
    of a frequency or repeat cap (spec section 8); the channel of a capacity."""
    if family == Family.INVENTORY:
        return {"item": str(instance.items["id"].iloc[subject])}
    if family == Family.FREQUENCY_CAP:
        return {"audience": str(instance.audiences["id"].iloc[subject])}
    if family == Family.REPEAT_CAP:
        audience, bundle = divmod(subject, max(len(instance.bundles), 1))
        return {"audience": str(instance.audiences["id"].iloc[audience]),
                "bundle": str(instance.bundles["id"].iloc[bundle])}
    if family == Family.CHANNEL_CAPACITY:
        return {"channel": str(instance.channels["id"].iloc[subject])}
    return {}


def row_name(constraint: str, subject: Mapping[str, Any]) -> str:
    """A row in words, from its family's label and `row_subject`: "inventory of sleeve-14",
    "max_repeats of laptop-care in audience rfm555"."""
    if subject.get("item"):
        return f"inventory of {subject['item']}"
    if subject.get("bundle"):
        return f"{constraint} of {subject['bundle']} in audience {subject['audience']}"
    if subject.get("audience"):
        return f"{constraint} of audience {subject['audience']}"
    if subject.get("channel"):
        return f"capacity of channel {subject['channel']}"
    return constraint
