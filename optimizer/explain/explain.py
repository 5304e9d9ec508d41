"""Why a (segment, bundle) is or is not in a plan, in figures and in words (issue 17).

For each bundle of a segment, one of:

- `in_plan`: the plan shows it; its value and what it uses of the priced rows.
- `not_candidate`: the candidate table has no variant of the pair; `rule` names the rule
  that dropped the last of them (`optimizer.explain.rules`).
- `no_room`: a candidate, but the segment may show no offers (`max_offers` 0).
- `beaten`: a candidate the plan leaves out, and forcing it in provably costs at least
  `loss_at_least`: proven by the multipliers (the Lagrangian bound, `optimizer.explain.prices`)
  or, when that proves less, by re-solving with the pair required (`optimizer.explain.forced`).
- `beaten_within_gap`: at the multipliers it is worth less to the segment than the chosen
  set, but by less than the plan stands below the multipliers' bound elsewhere: nothing
  is proven, and the figures say how much a plan with it could earn at most.
- `favoured_at_multipliers`: at the multipliers the segment would do at least as well
  with it. The plan leaves it out because the multipliers price the LP relaxation, whose
  segments may mix choices no integral plan can (or the solve stopped within its gap);
  the words say so, and what forcing it in could gain at most.

The comparison is the segment's own choice at the multipliers (its Lagrangian
subproblem): the chosen set against the best set that holds the pair, both valued at
value less the rows' charges. Every loss it states is a bound that holds for every plan
meeting every rule (`tests/workbench/test_explain.py` checks it against brute force).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.explain import text
from optimizer.explain.forced import forced_solve
from optimizer.explain.model import (
    ADDITIVE,
    BEATEN,
    BEATEN_WITHIN_GAP,
    FAVOURED,
    IN_PLAN,
    NO_ROOM,
    NOT_CANDIDATE,
    REASONS,
    BundleExplanation,
    Explanation,
    OfferVariant,
    RowCharge,
    RowExcess,
)
from optimizer.explain.prices import (
    FROM_LP,
    Prices,
    Row,
    lp_prices,
    plan_prices,
    priced_values,
    row_uses,
)
from optimizer.explain.rules import bundle_row, pair_rule, segment_responses, segment_row
from optimizer.formulation.candidates import Candidates, expand, match_offers
from optimizer.formulation.milp import Formulation, formulate
from optimizer.formulation.segment_choice import SegmentChooser
from optimizer.model.instance import Instance
from optimizer.plan.model import WITH_OFFERS, Plan

PROVEN_TOL = 1e-7  # a loss below this share of the plan's value is not called proven
# Up to this many candidates, an excluded pair is re-solved with it required (the whole MIP)
# when `resolve` is left to choose; the time limit is split between the pairs.
RESOLVE_MAX_CANDIDATES = 40_000
RESOLVE_SECONDS = 10.0


def explain(instance: Instance, plan: Plan, segment: str, bundle: str | None = None, *,
            resolve: bool | None = False, time_limit: float = RESOLVE_SECONDS,
            prices: Prices | None = None) -> Explanation:
    """Why each bundle of `segment` (or just `bundle`) is or is not in `plan`.

    The multipliers are the plan's own when it carries them, else the LP relaxation's
    duals. `resolve`: re-solve the whole MIP with each excluded candidate required, for a
    tighter proven loss than the multipliers give (False, the default: never, so a caller
    on a request thread runs no MIP; None: up to RESOLVE_MAX_CANDIDATES candidates).
    `time_limit` bounds the LP and the re-solves, all together (an LP stopped by it prices
    nothing; a re-solve stopped by it proves less). `prices`: the multipliers an earlier
    explanation of the same plan and instance used (its `prices`), so no LP is solved again."""
    started = time.perf_counter()
    s, b = _rows(instance, segment, bundle)
    cands = expand(instance)
    form = formulate(instance, cands)
    positions, share = plan_positions(instance, cands, plan)
    if prices is None or len(prices.rows) != len(form.per_take) + len(form.contact):
        prices = plan_prices(instance, form, plan) or lp_prices(instance, form, time_limit)
    pv = priced_values(cands, form, prices)
    best = SegmentChooser(cands).choose(pv)
    objective = float(share @ cands.value[positions])
    bound = float(pv[best].sum() + prices.multiplier @ _finite(prices.limit, prices.multiplier))
    mine = _segment_slice(cands, s)
    split = plan.offer_sets is not None
    case = _Case(instance, cands, form, prices, pv, s, mine, positions, share, objective, bound,
                 float(pv[mine][best[mine]].sum()), split)
    responses = segment_responses(instance, s)
    asked = [b] if b is not None else _bundles_of(case, responses)
    if resolve is None:
        resolve = len(cands) <= RESOLVE_MAX_CANDIDATES
    entries = [case.entry(k, responses.get(k)) for k in asked]
    # A split plan is a point of the LP (spec section 7): an integral re-solve bounds no split
    # plan, so only the multipliers (which bound both) prove anything there.
    if resolve and not split:
        entries = _resolved(case, entries, time_limit - (time.perf_counter() - started))
    headroom = None if plan.bound is None else max(0.0, plan.bound - objective)
    entries = [_with_gain(e, headroom) for e in entries]
    entries = [dataclasses.replace(e, text=text.entry_text(case.words, e)) for e in entries]
    return Explanation(
        segment=segment, bundle=bundle, entries=tuple(entries), currency=instance.currency,
        objective=objective, bound=bound, multipliers_source=prices.source,
        multipliers=tuple(prices.priced()), text=text.header(case.words, objective, bound,
                                                             prices, case.chosen_ids()),
        segment_views=float(cands.segment_views[s]), min_offers=int(cands.lo[s]),
        max_offers=int(cands.hi[s]), chosen=case.chosen_ids(), prices=prices)


def _rows(instance: Instance, segment: str, bundle: str | None) -> tuple[int, int | None]:
    issues = []
    s = segment_row(instance, segment) if isinstance(segment, str) else -1
    if s < 0:
        issues.append(Issue("segment", "must be a segment id of the instance", segment))
    b = None
    if bundle is not None:
        b = bundle_row(instance, bundle) if isinstance(bundle, str) else -1
        if b < 0:
            issues.append(Issue("bundle", "must be a bundle id of the instance", bundle))
    if issues:
        raise InputError(issues)
    return s, b


def _finite(limit: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """Limits where a row is priced (an unpriced row with no limit adds nothing)."""
    out: np.ndarray = np.where(multiplier > 0, limit, 0.0)
    return out


def _segment_slice(cands: Candidates, s: int) -> np.ndarray:
    """The positions of segment row `s`'s candidates (the table is ordered by segment)."""
    lo, hi = np.searchsorted(cands.segment, [s, s + 1])
    return np.arange(lo, hi, dtype=np.int64)


def plan_positions(instance: Instance, cands: Candidates, plan: Plan
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The candidate of each of the plan's offers, and its share; an offer that is no
    candidate of the instance (or a plan of another instance) is an input error."""
    if plan.instance != instance.name:
        raise InputError([Issue("plan.instance", f"must be the instance's name "
                                f"{instance.name!r} (a plan of this catalog)", plan.instance)])
    if plan.status not in WITH_OFFERS:
        raise InputError([Issue("plan.status", "must be optimal or feasible (a plan with "
                                "offers) to be explained", plan.status.value)])
    offers = plan.offers.frame()
    candidate = match_offers(instance, cands, offers).candidate
    found = candidate >= 0
    if not found.all():
        raise InputError([Issue(f"offers[{i}]", "must be a candidate of the instance (segment, "
                                "bundle, discount and perk)",
                                value_text=f"{offers['segment'].iloc[i]!r}, "
                                           f"{offers['bundle'].iloc[i]!r}, "
                                           f"{offers['discount'].iloc[i]:g}, "
                                           f"{offers['perk'].iloc[i]!r}")
                          for i in np.flatnonzero(~found)[:20].tolist()])
    return candidate, offers["share"].to_numpy(np.float64)


def _bundles_of(case: _Case, responses: dict[int, int]) -> list[int]:
    """The segment's bundles: in the plan (by expected margin), candidates left out (by
    value at the multipliers), then those with no candidate (in catalog order)."""
    c, mine = case.cands, case.mine
    shown = case.chosen_positions()
    in_plan = list(dict.fromkeys(c.bundle[shown[np.argsort(-case.chosen_value(), kind="stable")]]
                                 .tolist()))
    left = np.setdiff1d(c.bundle[mine], in_plan)
    best_pv = {int(k): float(case.pv[mine][c.bundle[mine] == k].max()) for k in left.tolist()}
    left_out = sorted(best_pv, key=lambda k: -best_pv[k])
    rest = [k for k in sorted(responses) if k not in set(in_plan) | set(left_out)]
    return [*in_plan, *left_out, *rest]


@dataclass
class _Case:
    """One explanation's data: the segment, its candidates, the plan and the multipliers."""

    instance: Instance
    cands: Candidates
    form: Formulation
    prices: Prices
    pv: np.ndarray  # per candidate: value at the multipliers
    s: int
    mine: np.ndarray  # the segment's candidate positions
    positions: np.ndarray  # the plan's candidates
    share: np.ndarray  # and their shares
    objective: float
    bound: float
    best_any: float  # the segment's best choice at the multipliers
    split: bool  # the plan splits views between offer sets (its offers have shares)

    def __post_init__(self) -> None:
        self.words = text.Words(self.instance, self.prices, self.split, self.tolerance())
        self.rows: tuple[Row, ...] = self.prices.rows
        self.chooser = SegmentChooser(self.cands.subset(self.mine))

    def chosen_mask(self) -> np.ndarray:
        return np.asarray(self.cands.segment[self.positions] == self.s)

    def chosen_positions(self) -> np.ndarray:
        return self.positions[self.chosen_mask()]

    def chosen_value(self) -> np.ndarray:
        out: np.ndarray = self.share[self.chosen_mask()] * self.cands.value[self.chosen_positions()]
        return out

    def chosen_ids(self) -> tuple[str, ...]:
        ids = self.instance.bundles["id"].to_numpy(dtype=object)
        return tuple(str(ids[k]) for k in self.cands.bundle[self.chosen_positions()].tolist())

    def chosen_priced(self) -> float:
        return float(self.share[self.chosen_mask()] @ self.pv[self.chosen_positions()])

    def best_set(self, bundle: int, include: bool) -> tuple[float, np.ndarray] | None:
        """The segment's best choice at the multipliers that holds (leaves out) `bundle`:
        its value and the positions it takes; None when no choice can."""
        c, mine = self.cands, self.mine
        value = self.pv[mine].copy()
        of_bundle = c.bundle[mine] == bundle
        if include:
            slot = c.slot_key[mine][of_bundle][0]
            value[(c.slot_key[mine] == slot) & ~of_bundle] = -np.inf  # its group holds it alone
            lift = 1.0 + 2.0 * float(np.abs(self.pv[mine]).sum())
            value[of_bundle] += lift
        else:
            value[of_bundle] = -np.inf
        chosen = self.chooser.choose(value)
        if include and not (chosen & of_bundle).any():
            return None  # the segment may show nothing
        if not include and int(chosen.sum()) < int(c.lo[self.s]) and of_bundle.any():
            return None  # without it the segment cannot fill its minimum
        best = float(self.pv[mine[chosen]].sum())
        # the set itself: among equally good ones, the one closest to the plan's
        in_plan = np.isin(mine, self.chosen_positions())
        nudge = 1e-9 * max(1.0, float(np.abs(self.pv[mine]).max()))
        picked = mine[self.chooser.choose(np.where(in_plan, value + nudge, value))]
        return best, picked

    def entry(self, bundle: int, response: int | None) -> BundleExplanation:
        c, inst = self.cands, self.instance
        bid = str(inst.bundles["id"].iloc[bundle])
        name = inst.bundles["name"].iloc[bundle]
        name = None if pd.isna(name) else str(name)  # None, NaN or pd.NA: a bundle without one
        base = BundleExplanation(bid, name, False, NOT_CANDIDATE, None, "")
        shown = self.chosen_positions()
        here = shown[c.bundle[shown] == bundle]
        if len(here):
            return self._in_plan(base, int(here[0]))
        of_bundle = self.mine[c.bundle[self.mine] == bundle]
        if not len(of_bundle):
            why = pair_rule(inst, c.variants, c.contacts, self.s, bundle, response)
            return dataclasses.replace(base, rule=why.rule, variants=why.variants)
        top = int(of_bundle[np.argmax(self.pv[of_bundle])])
        found = self._figures(base, top, 1.0)
        if c.hi[self.s] == 0:
            return dataclasses.replace(found, reason_code=NO_ROOM)
        alternative = self.best_set(bundle, include=True)
        assert alternative is not None  # hi >= 1: the bundle's slot can be taken
        value, picked = alternative
        replaced = np.setdiff1d(c.bundle[shown], c.bundle[picked])
        loss: float | None = self.objective - (self.bound - (self.best_any - value))
        proof = self.proven(loss, "multipliers")
        exceeds = self._exceeds(of_bundle)
        if exceeds:  # no plan holds it: no loss to state, the rows say why
            loss, proof = None, "row_limit"
        found = dataclasses.replace(found, alternative_priced_value=value,
                                    replaces=self._ids(replaced), loss_at_least=loss,
                                    proof=proof, exceeds=exceeds)
        return dataclasses.replace(found, reason_code=self.verdict(found))

    def _exceeds(self, pair: np.ndarray) -> tuple[RowExcess, ...]:
        """The rows with no negative coefficient that every variant of the pair overdraws
        on its own."""
        use = row_uses(self.cands, self.form, pair)
        least = use.min(axis=1)
        limit = self.prices.limit
        additive = np.isin([r.family for r in self.rows], ADDITIVE)
        over = additive & (least > limit + 1e-9 * np.maximum(1.0, np.abs(limit)))
        return tuple(RowExcess(self.rows[r].name, float(least[r]), float(limit[r]))
                     for r in np.flatnonzero(over).tolist())

    def verdict(self, e: BundleExplanation) -> str:
        """The reason code of a candidate left out, from its figures."""
        if e.exceeds or (e.loss_at_least is not None and e.loss_at_least > self.tolerance()) or \
                (e.forced is not None and e.forced.status == "infeasible"):
            return BEATEN
        assert e.alternative_priced_value is not None and e.chosen_priced_value is not None
        lower = e.alternative_priced_value < e.chosen_priced_value - self.tolerance()
        return BEATEN_WITHIN_GAP if lower else FAVOURED

    def tolerance(self) -> float:
        return PROVEN_TOL * max(1.0, abs(self.objective), abs(self.bound))

    def proven(self, loss: float | None, how: str) -> str | None:
        """`how` when `loss` proves a cost (above the tolerance); None for a loss of 0 or
        less, which proves nothing (a plan making the other choice might earn more)."""
        return how if loss is not None and loss > self.tolerance() else None

    def _in_plan(self, base: BundleExplanation, position: int) -> BundleExplanation:
        c = self.cands
        k = int(np.flatnonzero(self.positions == position)[0])
        found = self._figures(dataclasses.replace(base, in_plan=True, reason_code=IN_PLAN),
                              position, float(self.share[k]))
        bundle = int(c.bundle[position])
        alternative = self.best_set(bundle, include=False)
        if alternative is None:
            return found
        value, picked = alternative
        added = np.setdiff1d(c.bundle[picked], c.bundle[self.chosen_positions()])
        loss = self.objective - (self.bound - (self.best_any - value))
        return dataclasses.replace(found, alternative_priced_value=value, replaces=self._ids(added),
                                   loss_at_least=loss, proof=self.proven(loss, "multipliers"))

    def _figures(self, base: BundleExplanation, position: int, share: float) -> BundleExplanation:
        c, v = self.cands, self.cands.variants
        var = int(c.variant[position])
        perk = int(v.perk[var])
        perk_id = None if perk < 0 else str(self.instance.perks["id"].iloc[perk])
        use = row_uses(c, self.form, np.array([position]))[:, 0]
        charge = self.prices.multiplier * use
        charges = tuple(RowCharge(self.rows[r].name, self.rows[r].key[0],
                                  float(self.prices.multiplier[r]), float(use[r]), float(charge[r]))
                        for r in np.flatnonzero((self.prices.multiplier > 0) & (use != 0)).tolist())
        variant = OfferVariant(float(v.discount[var]), perk_id, float(v.reference_price[var]),
                               float(v.revenue[var]), float(v.reference_price[var] - v.revenue[var]),
                               share, share * float(c.takes[position]))
        return dataclasses.replace(base, variant=variant, value=float(c.value[position]),
                                   charges=charges, priced_value=float(self.pv[position]),
                                   chosen_priced_value=self.chosen_priced())

    def _ids(self, bundles: np.ndarray) -> tuple[str, ...]:
        ids = self.instance.bundles["id"].to_numpy(dtype=object)
        return tuple(str(ids[k]) for k in bundles.tolist())

    def pair_positions(self, bundle_id: str) -> np.ndarray:
        k = bundle_row(self.instance, bundle_id)
        out: np.ndarray = self.mine[self.cands.bundle[self.mine] == k]
        return out


def _with_gain(e: BundleExplanation, headroom: float | None) -> BundleExplanation:
    """A pair left out and not proven beaten (or shown, and leaving it out not proven to
    cost anything): what a plan making the other choice could earn more at most, by its
    loss (0 or less: it proves no cost) and by the plan's own proven bound (`headroom`
    above it)."""
    unproven_in_plan = e.reason_code == IN_PLAN and e.proof is None and e.loss_at_least is not None
    if e.reason_code not in (BEATEN_WITHIN_GAP, FAVOURED) and not unproven_in_plan:
        return e
    caps = [c for c in (None if e.loss_at_least is None else -e.loss_at_least, headroom)
            if c is not None]
    return e if not caps else dataclasses.replace(e, gain_at_most=max(0.0, min(caps)))


def _resolved(case: _Case, entries: list[BundleExplanation], time_limit: float
              ) -> list[BundleExplanation]:
    """Excluded candidates re-solved with the pair required, where that proves more."""
    todo = [i for i, e in enumerate(entries)
            if e.reason_code in (BEATEN, BEATEN_WITHIN_GAP, FAVOURED) and not e.exceeds]
    out = list(entries)
    left = time_limit
    for n, i in enumerate(todo):
        seconds = max(left, 0.0) / (len(todo) - n)
        e = entries[i]
        forced = forced_solve(case.form, case.pair_positions(e.bundle), seconds)
        loss = e.loss_at_least
        proof = e.proof
        if forced.bound is not None and (loss is None or case.objective - forced.bound > loss):
            loss = case.objective - forced.bound
            proof = case.proven(loss, "resolve")  # (the multipliers proved less: nothing)
        if forced.status == "infeasible":
            loss, proof = None, "resolve"
        found = dataclasses.replace(e, forced=forced, loss_at_least=loss, proof=proof)
        out[i] = dataclasses.replace(found, reason_code=case.verdict(found))
        left -= forced.seconds
    return out


__all__ = ["FROM_LP", "REASONS", "BundleExplanation", "Explanation", "OfferVariant", "RowCharge",
           "RowExcess", "explain"]
