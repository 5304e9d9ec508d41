"""A plan document's offers by their key: what stability and the plan diff compare."""

from __future__ import annotations

from typing import Any

import pandas as pd

OFFER_KEY = ("segment", "bundle", "discount", "perk")


def offers_of(plan: dict[str, Any]) -> pd.DataFrame:
    """A plan document's offers as a (segment, bundle, discount, perk) table."""
    offers = plan.get("offers") or []
    frame = pd.DataFrame(list(offers), columns=list(OFFER_KEY)) if offers else \
        pd.DataFrame({k: pd.Series(dtype=object) for k in OFFER_KEY})
    return frame.astype({"segment": object, "bundle": object, "perk": object, "discount": float})
