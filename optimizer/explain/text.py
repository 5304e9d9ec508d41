"""An explanation in plain words: each sentence built from its entry's figures only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from optimizer.explain import rules
from optimizer.explain.model import BundleExplanation, OfferVariant, RowCharge
from optimizer.explain.prices import FROM_LP, FROM_PLAN, Prices
from optimizer.model.families import Family
from optimizer.model.instance import Instance

MAX_ROWS_NAMED = 5
_SOURCE = {FROM_PLAN: "the plan's own multipliers",
           FROM_LP: "the LP relaxation's duals (the plan carries no multipliers)"}
_RULE_COUNT = {rules.MAX_DISCOUNT: "above max_discount", rules.MARGIN_FLOOR: "under the margin floor",
               rules.NEGATIVE_UPLIFT: "with negative uplift",
               rules.CONTACT_COST: "not earning the contact cost"}


def pct(x: float) -> str:
    return f"{100 * x:.4g}%"


class Words:
    """Money in the instance's currency, variants and row charges, in words."""

    def __init__(self, instance: Instance, prices: Prices, split: bool = False,
                 tolerance: float = 0.0) -> None:
        self.instance = instance
        self.cur = f" {instance.currency}" if instance.currency else ""
        self.prices = prices
        self.split = split  # the plan splits views: "forcing in" means to every view
        self.tolerance = tolerance  # figures closer than this are equal (as the verdicts judge)

    def money(self, x: float) -> str:
        return f"{0.0 if abs(x) < 0.5 else x:,.0f}{self.cur}"

    def price(self, x: float) -> str:
        """A price per unit of a row: whole units when large, else 3 significant digits."""
        return f"{x:,.0f}{self.cur}" if abs(x) >= 100 else f"{x:,.3g}{self.cur}"

    def deal(self, discount: float, perk: str | None) -> str:
        deal = "no discount" if discount == 0 else f"{pct(discount)} off"
        return deal + (f" with {perk}" if perk else "")

    def variant(self, v: OfferVariant) -> str:
        if v.savings > 0.005:
            shown = f"{self.money(v.reference_price)} → {self.money(v.price)}, " \
                    f"saves {self.money(v.savings)}"
        else:
            shown = self.money(v.price)
        return f"{self.deal(v.discount, v.perk)} ({shown})"

    def charge(self, c: RowCharge) -> str:
        sign = "minus" if c.charge > 0 else "plus"
        what = f"for {c.row}" if c.charge > 0 else f"for the room it leaves in {c.row}"
        return f"{sign} {self.money(abs(c.charge))} {what} ({self._use(c)})"

    def _use(self, c: RowCharge) -> str:
        label = c.constraint
        use, at = abs(c.use), self.price(c.multiplier)
        if label == Family.INVENTORY.label:
            return f"{use:,.1f} units at {at} each"
        if label == Family.PROMOTION_BUDGET.label:
            unit = self.cur.strip() or "unit"
            return f"{self.money(use)} of budget at {c.multiplier:,.3g} per {unit}"
        if label == Family.CHANNEL_CAPACITY.label:
            return f"{use:,.0f} impressions at {at} each"
        if label == Family.FREQUENCY_CAP.label:
            return f"{use:,.3g} offers per customer at {at} each"
        if label == Family.REPEAT_CAP.label:
            return f"{use:,.0f} context at {at}"
        return f"{use:,.4g} units of the row at {c.multiplier:,.4g} each"

    def charges(self, charges: Sequence[RowCharge]) -> str:
        return ", ".join(self.charge(c) for c in charges)


def header(w: Words, objective: float, bound: float, prices: Prices, chosen: Sequence[str]) -> str:
    shown = ", ".join(chosen) if chosen else "nothing"
    named = prices.priced()
    rows = "; ".join(f"{r['row']} at {w.price(r['multiplier'])} per unit"
                     for r in named[:MAX_ROWS_NAMED])
    more = f" and {len(named) - MAX_ROWS_NAMED} more" if len(named) > MAX_ROWS_NAMED else ""
    priced = f"Priced rows: {rows}{more}." if named else "No row is priced."
    source = _SOURCE.get(prices.source, "no multipliers (the LP relaxation could not be solved)")
    return (f"The plan shows {shown} in this segment. The plan earns {w.money(objective)}; at "
            f"{source}, no plan earns more than {w.money(bound)} (the multipliers' bound). "
            f"{priced}")


def entry_text(w: Words, e: BundleExplanation) -> str:
    named = f"{e.bundle_name} ({e.bundle})" if e.bundle_name else e.bundle
    if e.reason_code == "not_candidate":
        return f"{named} is not a candidate for this segment: {_rule(w, e)}."
    assert e.variant is not None and e.value is not None and e.priced_value is not None
    worth = f"worth {w.money(e.value)} to this segment"
    if e.charges:
        worth += f", {w.charges(e.charges)}: {w.money(e.priced_value)} at the multipliers"
    if e.reason_code == "in_plan":
        return _in_plan(w, named, e)
    if e.reason_code == "no_room":
        return (f"{named} is a candidate ({w.variant(e.variant)}, {worth}), but this segment "
                f"may show no offers (its max_offers is 0).")
    return _left_out(w, named, e, worth)


def _in_plan(w: Words, named: str, e: BundleExplanation) -> str:
    assert e.variant is not None and e.value is not None and e.priced_value is not None
    v = e.variant
    views = "" if v.share >= 1.0 else f" to {pct(v.share)} of the views"
    out = (f"{named} is in the plan: {w.variant(v)}{views}, {v.expected_takes:,.1f} expected "
           f"takes, +{w.money(v.share * e.value)} expected incremental margin.")
    if e.charges:
        whole = "" if v.share >= 1.0 else f" (shown to the whole segment: {w.money(e.value)})"
        out += (f" At the multipliers{whole}, {w.charges(e.charges)}, it is worth "
                f"{w.money(e.priced_value)}.")
    loss, gain = e.loss_at_least, e.gain_at_most
    if e.proof is not None and loss is not None and e.alternative_priced_value is not None:
        out += (f" Leaving it out costs at least {w.money(loss)}: the segment's best choice "
                f"without it is worth {w.money(e.alternative_priced_value)} at the multipliers, "
                f"against {w.money(e.chosen_priced_value or 0.0)} for the chosen set.")
    elif gain is not None and gain <= w.tolerance:
        out += (" Leaving it out is not proven to cost anything, but no plan without it earns "
                "more than this one.")
    elif gain is not None:
        out += (f" Leaving it out is not proven to cost anything: a plan without it could earn "
                f"at most {w.money(gain)} more than this one.")
    return out


def _left_out(w: Words, named: str, e: BundleExplanation, worth: str) -> str:
    assert e.variant is not None
    chosen, alt = e.chosen_priced_value or 0.0, e.alternative_priced_value or 0.0
    replacing = f" (dropping {', '.join(e.replaces)})" if e.replaces else ""
    out = [f"{named} is a candidate the plan leaves out. Its best variant at the multipliers, "
           f"{w.variant(e.variant)}, is {worth}. The segment's chosen set is worth "
           f"{w.money(chosen)} at the same multipliers; the best set with it{replacing} "
           f"{w.money(alt)}."]
    forced = e.forced
    if e.exceeds:
        over = "; ".join(f"{_amount(w, x.row, x.least_use)} of {x.row}, whose limit is "
                         f"{_amount(w, x.row, x.limit)}" for x in e.exceeds)
        if w.split:
            return (f"{named} is a candidate that cannot be shown to every view of this segment: "
                    f"even its least demanding variant, shown to all of them, needs {over} (a "
                    f"split plan may show it to part of them).")
        return (f"{named} is a candidate that can never be shown in this segment: even its "
                f"least demanding variant needs {over}.")
    favoured = alt >= chosen - w.tolerance
    if favoured:
        out.append("So at the multipliers the segment would do at least as well with it. The "
                   "plan leaves it out all the same: the multipliers price a relaxation, where a "
                   "segment may mix offer sets and a row is met on average, while the plan is "
                   "integral and meets every row.")
    if forced is not None and forced.status == "infeasible":
        out.append("Re-solved with it required in this segment, no plan meets every rule: it "
                   "cannot be forced in.")
        return " ".join(out)
    loss = e.loss_at_least
    if e.reason_code == "beaten" and loss is not None:
        if e.proof == "resolve" and forced is not None and forced.bound is not None:
            found = "" if forced.objective is None else \
                f" (the best found earns {w.money(forced.objective)})"
            out.append(f"Re-solved with it required in this segment, no plan earns more than "
                       f"{w.money(forced.bound)}{found}: forcing it in costs at least "
                       f"{w.money(loss)}.")
        else:
            allowance = (chosen - alt) - loss
            out.append(f"Forcing it in costs at least {w.money(loss)}: the {w.money(chosen - alt)} "
                       f"it loses at the multipliers, less the {w.money(allowance)} by which the "
                       f"rest of the plan stands below the multipliers' bound.")
        return " ".join(out)
    if not favoured:
        out.append(f"It loses {w.money(chosen - alt)} at the multipliers, but the plan stands "
                   f"further below the multipliers' bound than that, so this does not prove "
                   f"that forcing it in costs anything.")
    if forced is not None and forced.bound is not None:
        found = "" if forced.objective is None else \
            f"; the best found with it earns {w.money(forced.objective)}"
        out.append(f"Re-solved with it required, no plan earns more than "
                   f"{w.money(forced.bound)}{found}.")
    gain = e.gain_at_most
    if gain is not None and gain <= w.tolerance:
        out.append("No plan with it earns more than this one, but how much less is not proven"
                   + (": the re-solve did not prove more." if forced is not None else
                      " here (the plan's bound proves it optimal; a re-solve with it required "
                      "would tell how much)."))
    elif gain is not None:
        out.append(f"Forcing it in is not proven to cost anything: a plan with it could earn at "
                   f"most {w.money(gain)} more than this one.")
    return " ".join(out)


def _amount(w: Words, row: str, x: float) -> str:
    if row.startswith("inventory of"):
        return f"{x:,.1f} units"
    if row.startswith("capacity of channel"):
        return f"{x:,.0f} impressions"
    if row == Family.PROMOTION_BUDGET.label:
        return w.money(x)
    return f"{x:,.4g}"


def _rule(w: Words, e: BundleExplanation) -> str:
    rule, variants = e.rule, e.variants
    if rule == rules.SILENT_SEGMENT:
        return "the segment is silent: it is never shown anything"
    if rule == rules.NO_RESPONSE:
        return "it has no response for this segment, so nothing says how it would sell here"
    if rule == rules.EMPTY_LADDER:
        return "the bundle has no discount levels to offer it at"
    counts = Counter(v.rule for v in variants)
    tail = "" if len(counts) < 2 else " (its variants: " + ", ".join(
        f"{n} {_RULE_COUNT[r]}" for r, n in counts.items() if r is not None) + ")"
    cap = w.instance.policy.max_discount
    if rule == rules.MAX_DISCOUNT:
        return f"every discount of its ladder is above the policy's max_discount of " \
               f"{pct(cap or 0.0)}{tail}"
    if rule == rules.MARGIN_FLOOR:
        floored = [v for v in variants if v.rule == rules.MARGIN_FLOOR and v.margin is not None]
        best = max(floored, key=lambda v: (v.margin or 0.0) / max(v.price, 1e-12))
        rate = (best.margin or 0.0) / best.price if best.price > 0 else float("-inf")
        return (f"no variant keeps its margin floor of {pct(best.floor or 0.0)}: the best, "
                f"{w.deal(best.discount, best.perk)}, keeps {pct(rate)} of its price "
                f"({w.money(best.price)}){tail}")
    valued = [v for v in variants if v.rule in (rules.NEGATIVE_UPLIFT, rules.CONTACT_COST)]
    best = max(valued, key=lambda v: v.value or 0.0)
    if rule == rules.CONTACT_COST:
        return (f"no variant earns its contact cost: the best, {w.deal(best.discount, best.perk)}, "
                f"would earn {w.money(best.value or 0.0)} once the contact cost of its "
                f"impressions is paid{tail}")
    return (f"no variant adds margin over what this segment buys anyway: the best, "
            f"{w.deal(best.discount, best.perk)}, would change its margin by "
            f"{w.money(best.value or 0.0)}{tail}")
