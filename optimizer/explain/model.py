"""What an explanation holds (`optimizer.explain.explain` fills it, `optimizer.explain.text`
puts it in words): per bundle its reason code, figures and text; per segment the entries."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from optimizer.explain.forced import Forced
from optimizer.explain.prices import Prices
from optimizer.explain.rules import VariantReason
from optimizer.model.families import Family

IN_PLAN = "in_plan"
NOT_CANDIDATE = "not_candidate"
NO_ROOM = "no_room"
BEATEN = "beaten"
BEATEN_WITHIN_GAP = "beaten_within_gap"
FAVOURED = "favoured_at_multipliers"
REASONS = (IN_PLAN, NOT_CANDIDATE, NO_ROOM, BEATEN, BEATEN_WITHIN_GAP, FAVOURED)


@dataclass(frozen=True)
class RowCharge:
    """What a variant, shown to the whole segment, uses of a priced row, and its price."""

    row: str  # the row in words: "inventory of sleeve-14", "promotion_budget"
    constraint: str
    multiplier: float  # margin per unit of the row
    use: float  # the variant's use of the row (as a `<=` row: negative makes room)
    charge: float  # multiplier x use

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RowExcess:
    """A row that every variant of a pair overdraws on its own: the pair can never be shown."""

    row: str
    least_use: float  # the least any variant of the pair uses of the row
    limit: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Rows whose every coefficient is >= 0: a variant that overdraws one alone can never be shown.
ADDITIVE = (Family.INVENTORY, Family.PROMOTION_BUDGET, Family.CHANNEL_CAPACITY,
             Family.FREQUENCY_CAP, Family.REPEAT_CAP)


@dataclass(frozen=True)
class OfferVariant:
    """The variant an entry is about: the plan's, or the best at the multipliers."""

    discount: float
    perk: str | None
    reference_price: float
    price: float
    savings: float  # reference price - price
    share: float  # of the segment's views that see it (1 unless split traffic)
    expected_takes: float  # at that share

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BundleExplanation:
    """One bundle of the segment: in the plan or not, and why, in figures and in words.

    Figures are in the instance's currency, for the variant shown to the whole segment
    (`variant.share` says how much of it the plan shows). `priced_value` is `value` less
    the `charges`; `chosen_priced_value` the segment's chosen set at the multipliers;
    `alternative_priced_value` the segment's best set at the multipliers with the pair
    when the plan leaves it out (without it when the plan shows it), and `replaces` the
    bundles that set drops from (adds to) the chosen one. `loss_at_least` is what the
    opposite choice provably costs: every plan that holds the pair (leaves it out) earns
    at most the plan's objective less it; negative, it says how much such a plan could
    earn more at most. `proof` says what proves it: `multipliers`, `resolve` (`forced`) or
    `row_limit` (`exceeds`). For a pair left out and not proven beaten, `gain_at_most` is
    what a plan with it could earn more at most: `-loss_at_least`, or less when the plan's
    own proven bound says so (0: the plan is optimal, forcing it in gains nothing).
    """

    bundle: str
    bundle_name: str | None
    in_plan: bool
    reason_code: str
    rule: str | None
    text: str
    variant: OfferVariant | None = None
    value: float | None = None
    charges: tuple[RowCharge, ...] = ()
    priced_value: float | None = None
    chosen_priced_value: float | None = None
    alternative_priced_value: float | None = None
    replaces: tuple[str, ...] = ()
    loss_at_least: float | None = None
    gain_at_most: float | None = None  # not proven beaten: what a plan with it could earn more
    proof: str | None = None
    forced: Forced | None = None
    exceeds: tuple[RowExcess, ...] = ()  # rows every variant overdraws alone (then `beaten`)
    variants: tuple[VariantReason, ...] = ()  # not_candidate: each variant's own rule

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["variant"] = None if self.variant is None else self.variant.to_dict()
        out["charges"] = [c.to_dict() for c in self.charges]
        out["replaces"] = list(self.replaces)
        out["forced"] = None if self.forced is None else self.forced.to_dict()
        out["exceeds"] = [x.to_dict() for x in self.exceeds]
        out["variants"] = [v.to_dict() for v in self.variants]
        return out


@dataclass(frozen=True)
class Explanation:
    """Why a segment's bundles are or are not in a plan. `bundle` is the one asked about
    (None: every bundle with a response for the segment, and any the plan shows).

    `objective` is the plan's value recomputed from the instance; `bound` the
    multipliers' Lagrangian bound on every plan; `multipliers_source` where the multipliers
    come from: `plan` (the solve's own, `binding[].multiplier` and `solver.multipliers`),
    `lp` (the LP relaxation's duals, computed here because the plan carries none) or
    `none` (the relaxation could not be solved: nothing is priced). `prices` are those
    multipliers on every row, for another explanation of the same plan (`explain(...,
    prices=)`: no LP solved again); they are not part of `to_dict()`."""

    segment: str
    bundle: str | None
    entries: tuple[BundleExplanation, ...]
    currency: str | None
    objective: float
    bound: float
    multipliers_source: str
    multipliers: tuple[dict[str, Any], ...] = ()
    text: str = ""
    segment_views: float = 0.0
    min_offers: int = 0
    max_offers: int = 0
    chosen: tuple[str, ...] = field(default=())
    prices: Prices | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "bundle": self.bundle, "currency": self.currency,
                "objective": self.objective, "bound": self.bound,
                "multipliers_source": self.multipliers_source,
                "multipliers": [dict(m) for m in self.multipliers],
                "segment_views": self.segment_views, "min_offers": self.min_offers,
                "max_offers": self.max_offers, "chosen": list(self.chosen), "text": self.text,
                "entries": [e.to_dict() for e in self.entries]}
