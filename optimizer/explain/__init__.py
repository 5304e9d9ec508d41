"""Why a (segment, bundle) is or is not in a plan: the candidate rule that dropped it, or
its value at the binding rows' multipliers against the chosen offers' (issue 17).
`docs/workbench.md` describes the figures and the reason codes."""

from optimizer.explain.explain import explain
from optimizer.explain.forced import Forced
from optimizer.explain.model import (
    REASONS,
    BundleExplanation,
    Explanation,
    OfferVariant,
    RowCharge,
    RowExcess,
)
from optimizer.explain.prices import FROM_LP, FROM_PLAN, NONE, Prices
from optimizer.explain.rules import RULES, VariantReason

__all__ = ["FROM_LP", "FROM_PLAN", "NONE", "REASONS", "RULES", "BundleExplanation", "Explanation",
           "Forced", "OfferVariant", "Prices", "RowCharge", "RowExcess", "VariantReason", "explain"]
