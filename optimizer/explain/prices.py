"""The multipliers an explanation prices the coupling rows at, and what they make of each
candidate: its value less its use of every priced row (the segment's Lagrangian
subproblem), and the Lagrangian bound on every plan.

Rows are those of the plan's formulation (`optimizer.formulation.milp.formulate`): the
coupling rows (inventory, discount dependence, budget, aggregate margin, channel
capacities) per unit of takes, as `<=` rows (`VariantRows.as_le`), and rows 8-9 (an
audience's frequency and repeat caps) on the candidates. A multiplier is margin per unit
of its row, >= 0. For any multipliers `lam >= 0` and any plan x that meets every row,

    value(x) <= sum_s (value - lam * use)(x_s) + lam * limit
             <= sum_s max over segment s's own choices + lam * limit  =  L(lam),

so `L(lam)` bounds every plan, and with a pair's inclusion forced (or excluded) in segment s
the same sum, with s's maximum taken over the choices that hold (or leave out) the pair,
bounds every plan that does. That is all the explanation claims; it holds for any `lam`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.errors import InputError, Issue
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.contacts import keys_of
from optimizer.formulation.milp import Formulation, milp_problem
from optimizer.model.families import Family, row_name, row_subject
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan

# Where the multipliers come from.
FROM_PLAN = "plan"  # the plan's own: `binding[].multiplier` and `solver.multipliers`
FROM_LP = "lp"  # the LP relaxation's duals, computed for the explanation
NONE = "none"  # the relaxation could not be solved: every row at 0 (the bound is weaker)

RowKey = tuple[str, str | None, str | None, str | None, str | None]


@dataclass(frozen=True)
class Row:
    """A row the explanation may price: what the plan calls it, and its name in words."""

    key: RowKey  # (constraint, item, audience, bundle, channel), as the plan names rows
    name: str  # "inventory of sleeve-14", "promotion_budget", ...
    family: Family


@dataclass(frozen=True)
class Prices:
    """Per row of `form.per_take` then of `form.contact`: its multiplier (>= 0)."""

    rows: tuple[Row, ...]
    multiplier: np.ndarray
    source: str
    limit: np.ndarray  # each row's limit as a `<=` row

    def priced(self) -> list[dict[str, Any]]:
        """The rows with a positive multiplier, by name, largest first."""
        order = np.argsort(-self.multiplier, kind="stable")
        return [{"row": self.rows[i].name, "constraint": self.rows[i].key[0],
                 "multiplier": float(self.multiplier[i])}
                for i in order.tolist() if self.multiplier[i] > 0]


def form_rows(instance: Instance, form: Formulation) -> tuple[Row, ...]:
    """Every row of the formulation the explanation prices, named as the plan names them."""
    out = []
    for family, subject in ((form.per_take.family, form.per_take.subject),
                            (form.contact.family, form.contact.subject)):
        for f, s in zip(family.tolist(), subject.tolist(), strict=True):
            kind = Family(int(f))
            named = row_subject(instance, kind, int(s))
            key = (kind.label, named.get("item"), named.get("audience"), named.get("bundle"),
                   named.get("channel"))
            out.append(Row(key, row_name(kind.label, named), kind))
    return tuple(out)


def row_limits(form: Formulation) -> np.ndarray:
    """Each row's limit, written as a `<=` row (coupling rows by `as_le`, then rows 8-9)."""
    _, limit = form.per_take.as_le()
    out: np.ndarray = np.r_[limit, form.contact.upper]
    return out


def plan_prices(instance: Instance, form: Formulation, plan: Plan) -> Prices | None:
    """The multipliers the plan carries (the solve's: LP duals or Lagrange multipliers),
    on the rows it names; None when it carries none (the exact MIP reports no duals)."""
    entries: list[tuple[str, Mapping[str, Any]]] = []
    listed = plan.solver.get("multipliers")
    if isinstance(listed, Sequence) and not isinstance(listed, str):
        entries += [(f"solver.multipliers[{k}]", e) for k, e in enumerate(listed)]
    entries += [(f"binding[{k}]", e) for k, e in enumerate(plan.binding or ())
                if isinstance(e, Mapping) and "multiplier" in e]
    if listed is None and not entries:
        return None
    rows = form_rows(instance, form)
    at = {row.key: i for i, row in enumerate(rows)}
    multiplier = np.zeros(len(rows))
    issues = []
    for path, entry in entries:
        if not isinstance(entry, Mapping):
            issues.append(Issue(path, "must be an object", entry))
            continue
        value = entry.get("multiplier")
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not (np.isfinite(value) and value >= 0):
            issues.append(Issue(f"{path}.multiplier", "must be a finite number >= 0", value))
            continue
        key = (entry.get("constraint"), entry.get("item"), entry.get("audience"),
               entry.get("bundle"), entry.get("channel"))
        if key in at:  # a row the instance's candidates cannot reach never binds: no price
            multiplier[at[key]] = float(value)
    if issues:
        raise InputError(issues)
    return Prices(rows, multiplier, FROM_PLAN, row_limits(form))


def lp_prices(instance: Instance, form: Formulation, time_limit: float | None = None) -> Prices:
    """The LP relaxation's duals (HiGHS's simplex), as magnitudes in each row's own units;
    every row at 0 (`NONE`) when the LP is not solved within `time_limit` seconds."""
    from optimizer.backends import Termination
    from optimizer.decomposition.lp_guided import Relaxation

    rows = form_rows(instance, form)
    if not len(form.candidates):
        return Prices(rows, np.zeros(len(rows)), FROM_LP, row_limits(form))
    lp = Relaxation(form, milp_problem(form), threads=1)
    termination, _, _ = lp.solve(time_limit)
    if termination != Termination.OPTIMAL:
        return Prices(rows, np.zeros(len(rows)), NONE, row_limits(form))
    return Prices(rows, lp.row_prices(), FROM_LP, row_limits(form))


def priced_values(cands: Candidates, form: Formulation, prices: Prices) -> np.ndarray:
    """Per candidate: its value less its use of every row at the multipliers."""
    n_take = len(form.per_take)
    K, _ = form.per_take.as_le()
    per_column = np.asarray(K.T @ prices.multiplier[:n_take]).ravel()
    out: np.ndarray = cands.value - cands.priced(per_column) - \
        _contact_charge(cands, form, prices.multiplier[n_take:])
    return out


def _contact_charge(cands: Candidates, form: Formulation, multiplier: np.ndarray) -> np.ndarray:
    """Per candidate: its use of rows 8-9 at their multipliers."""
    if not len(form.contact) or not (multiplier > 0).any():
        return np.zeros(len(cands))
    keys, coef, pos = cands.contacts.entries(cands.segment, cands.bundle)
    row_keys = keys_of(form.contact.family, form.contact.subject)
    order = np.argsort(row_keys)
    at = np.minimum(np.searchsorted(row_keys[order], keys), len(order) - 1)
    hit = row_keys[order][at] == keys
    price = np.where(hit, multiplier[order][at], 0.0)
    out: np.ndarray = np.bincount(pos, coef * price, minlength=len(cands))
    return out


def row_uses(cands: Candidates, form: Formulation, positions: np.ndarray) -> np.ndarray:
    """Rows x positions: how much each candidate at `positions` puts in each row (as a `<=`
    row: coupling rows, then rows 8-9)."""
    some = cands.subset(np.asarray(positions, dtype=np.int64))
    K, _ = form.per_take.as_le()
    take = (K @ some.usage_matrix()).toarray()
    contact = np.zeros((len(form.contact), len(some)))
    if len(form.contact):
        keys, coef, pos = some.contacts.entries(some.segment, some.bundle)
        row_keys = keys_of(form.contact.family, form.contact.subject)
        order = np.argsort(row_keys)
        at = np.minimum(np.searchsorted(row_keys[order], keys), len(order) - 1)
        hit = row_keys[order][at] == keys
        np.add.at(contact, (order[at[hit]], pos[hit]), coef[hit])
    out: np.ndarray = np.vstack([take, contact])
    return out
