"""Off-policy estimates of a target plan's value from served logs: the direct method (DM),
inverse propensity scoring (IPS), self-normalized IPS (SNIPS) and doubly robust (DR), as the
Open Bandit Pipeline defines them, on the bandit view of `optimizer.measure.actions`.

With rounds i (views), logged action a_i in segment s_i with propensity p_i, reward r_i,
target probability pi(a | s) and model q(s, a), the weight w_i = pi(a_i | s_i) / p_i and
DM(s) = sum_a pi(a | s) q(s, a):

    IPS   = mean(w_i r_i)                  SNIPS = sum(w_i r_i) / sum(w_i)
    DM    = mean(DM(s_i))                  DR    = mean(DM(s_i) + w_i (r_i - q(s_i, a_i)))

Each is computed from group sums (a group's rounds share segment, action and weight), never
view by view. Its 95% interval is normal: the sample variance of its per-round terms (the
influence function, for SNIPS) within each segment (the logs' mix of segments is taken as
given, as `measure` takes the views), plus what the holdout's baseline rates add (delta
method). Takes of different offers in one view are taken as independent (aggregated logs do
not say which views took two offers). DM has no interval: its error is the model's bias. The value is per
view, the target served with `holdout` of its views held out (the instance's
`holdout_fraction` by default, as the storefront would serve it).

A target action never logged in a segment and version has no weight to carry it: IPS and
SNIPS count it as earning nothing there (biased toward 0 by `unsupported_share`), while DM and
DR value it by the model. The estimates cover the segments the logs hold; target sets of
segments absent from the logs are counted in `unlogged_target_segments`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.io.fields import Locator
from optimizer.measure.actions import Bandit, bandit
from optimizer.measure.logs import read_served
from optimizer.measure.measurement import LEVEL, Figure, number
from optimizer.measure.plan_sets import expected_per_view, plan_sets
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan

ESTIMATORS = ("on_policy", "dm", "ips", "snips", "dr")


@dataclass(frozen=True)
class OffPolicyEstimate:
    """Per-view values of the target plan (and of the logged policy, `on_policy`)."""

    target: str
    holdout: float
    views: float
    on_policy: Figure
    dm: Figure  # no interval: its error is the model's bias, which the logs' variance misses
    ips: Figure
    snips: Figure
    dr: Figure
    expected_per_view: float  # the target plan's own figures, on the logs' segment mix
    unsupported_share: float
    effective_views: float  # (sum w)^2 / sum w^2: how many views IPS effectively rests on
    unlogged_target_segments: int
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"format": "offeropt/off-policy@1", "target": self.target, "level": LEVEL,
                "holdout": self.holdout, "views": number(self.views),
                **{name: getattr(self, name).to_dict() for name in ESTIMATORS},
                "expected_per_view": number(self.expected_per_view),
                "unsupported_share": number(self.unsupported_share),
                "effective_views": number(self.effective_views),
                "unlogged_target_segments": self.unlogged_target_segments,
                "warnings": list(self.warnings)}


def off_policy(logs: pd.DataFrame, instance: Instance, target: Plan, *,
               holdout: float | None = None, locator: Locator | None = None,
               name: str = "logs", label: str | None = None) -> OffPolicyEstimate:
    """Estimates of `target`'s value per view from the logs of another policy (their
    `set` and `propensity` columns say what was served, and how likely it was). `label`
    names the target in reports (default: "plan for INSTANCE")."""
    h = instance.policy.holdout_fraction if holdout is None else holdout
    if not 0 <= h < 1:
        raise InputError([Issue("holdout", "must be in [0, 1)", h)])
    served = read_served(logs, instance, locator, name, require=("set", "propensity"))
    if not len(served.cells):
        raise InputError([Issue(name, "must hold at least one row to estimate from",
                                value_text="no rows")])
    b = bandit(served, instance, target, h)
    return _estimate(b, target, instance, h, label or f"plan for {target.instance}")


def _estimate(b: Bandit, target: Plan, instance: Instance, h: float,
              label: str) -> OffPolicyEstimate:
    g = b.groups
    n_views = g["views"].to_numpy(np.float64)
    n = n_views.sum()
    reward, sq = g["reward"].to_numpy(), g["reward_sq"].to_numpy()
    w = g["target"].to_numpy() / g["pscore"].to_numpy()
    q, dm = g["q"].to_numpy(), g["dm"].to_numpy()

    base = _BaselineVariance(b, w, n)
    stratum = pd.factorize(g["segment"])[0]

    def figure(total: np.ndarray, square: np.ndarray, baseline: float) -> Figure:
        """The mean of per-round terms (their sums and sums of squares per group), its
        variance within segments (the logs' mix of segments is given) plus the baseline's."""
        return Figure.of(total.sum() / n, np.sqrt(_within(total, square, n_views, stratum) / n**2
                                                  + baseline))

    residual = reward - n_views * q
    snips = float((w * reward).sum() / (w * n_views).sum())
    mean_w = (w * n_views).sum() / n
    snips_total = w * (reward - n_views * snips) / mean_w
    snips_sq = w**2 * (sq - 2 * snips * reward + n_views * snips**2) / mean_w**2
    dr_sq = n_views * dm**2 + 2 * dm * w * residual + w**2 * (sq - 2 * q * reward + n_views * q**2)
    snips_figure = figure(snips_total, snips_sq, base.logged(w, float((w * n_views).sum())))
    unsupported = _unsupported(b)
    logged = set(np.unique(g["segment"]).tolist())
    target_segments = set(plan_sets(target, instance, "target")["segment"].tolist())
    estimate = OffPolicyEstimate(
        target=label, holdout=h, views=float(n),
        on_policy=figure(reward, sq, base.logged(np.ones(len(g)), n)),
        dm=Figure.of((n_views * dm).sum() / n),
        ips=figure(w * reward, w**2 * sq, base.logged(w, n)),
        snips=Figure.of(snips, snips_figure.se),
        dr=figure(n_views * dm + w * residual, dr_sq, base.target()),
        expected_per_view=_expected(g, target, instance, h, n),
        unsupported_share=unsupported,
        effective_views=float((w * n_views).sum() ** 2 / max((w**2 * n_views).sum(), 1e-300)),
        unlogged_target_segments=len(target_segments - logged))
    return _with_warnings(estimate)


def _within(total: np.ndarray, square: np.ndarray, views: np.ndarray,
            stratum: np.ndarray) -> float:
    """Sum over strata of n_k x the sample variance of the per-round terms within stratum k,
    from each group's sum and sum of squares of its rounds' terms."""
    n = np.bincount(stratum, weights=views)
    t = np.bincount(stratum, weights=total)
    q = np.bincount(stratum, weights=square)
    safe = np.where(n > 0, n, 1.0)
    var = np.clip(q - t**2 / safe, 0.0, None) / np.maximum(n - 1, 1.0)
    return float((n * var).sum())


class _BaselineVariance:
    """What the holdout's baseline rates add to an estimate's variance: the estimate moves
    with each pair's rate by `-sum of (weight x views shown the pair's bundle x m0) / scale`
    (delta method; the pairs' holdouts are independent). For IPS, SNIPS and the logged policy
    the views are the logged ones; for DR (whose logged terms cancel the rate between reward
    and model) the target's own exposure to each pair."""

    def __init__(self, b: Bandit, w: np.ndarray, n: float) -> None:
        self.b, self.w, self.n = b, w, n
        cells, offers = b.cells, b.offers
        pairs = pd.MultiIndex.from_arrays([np.r_[cells["segment"], offers["segment"]],
                                           np.r_[cells["bundle"], offers["bundle"]]])
        self.code, _ = pd.factorize(pairs)
        self.var = np.zeros(int(self.code.max(initial=-1)) + 1)
        self.var[self.code] = np.r_[cells["beta_var"], offers["beta_var"]]

    def _weigh(self, coefficient: np.ndarray, rows: np.ndarray) -> float:
        per_pair = np.bincount(self.code[rows], weights=coefficient, minlength=len(self.var))
        return float((per_pair**2 * self.var).sum())

    def logged(self, group_weight: np.ndarray, scale: float) -> float:
        cells = self.b.cells
        weight = group_weight[cells["group"].to_numpy()]
        coefficient = weight * cells["views"].to_numpy(np.float64) * cells["m0"].to_numpy() / scale
        return self._weigh(coefficient, np.arange(len(cells)))

    def target(self) -> float:
        g, offers = self.b.groups, self.b.offers
        rounds = g.groupby("segment")["views"].sum()
        views = rounds.reindex(offers["segment"]).fillna(0.0).to_numpy()
        coefficient = views * offers["prob"].to_numpy() * offers["m0"].to_numpy() / self.n
        return self._weigh(coefficient, len(self.b.cells) + np.arange(len(offers)))


def _unsupported(b: Bandit) -> float:
    """The target's probability of actions a segment and version never logged, averaged
    over the logged views."""
    g, policy = b.groups, b.target
    rounds = g.groupby(["segment", "version"], as_index=False)["views"].sum()
    wanted = rounds.merge(policy[policy["prob"] > 0], on="segment")
    seen = g[g["propensity"] > 0][["segment", "version", "action"]].drop_duplicates()
    wanted = wanted.merge(seen.assign(seen=True), on=["segment", "version", "action"], how="left")
    missing = wanted["seen"].isna().to_numpy()
    total = float(rounds["views"].sum())
    lost = float((wanted["views"] * wanted["prob"]).to_numpy()[missing].sum())
    return lost / total if total > 0 else 0.0


def _expected(g: pd.DataFrame, target: Plan, instance: Instance, h: float, n: float) -> float:
    per = expected_per_view(target, instance)["margin"].to_numpy()
    views = g.groupby("segment")["views"].sum()
    return float((views.to_numpy() * per[views.index.to_numpy()]).sum() * (1 - h) / n)


def _with_warnings(e: OffPolicyEstimate) -> OffPolicyEstimate:
    out = []
    if e.unsupported_share > 1e-9:
        out.append(f"{100 * e.unsupported_share:.1f}% of the target's probability falls on offer "
                   "sets the logs never served in their segment: IPS and SNIPS count them as "
                   "earning nothing; DM and DR value them by the instance's model")
    if e.unlogged_target_segments:
        out.append(f"{e.unlogged_target_segments} segments of the target plan have no views in "
                   "the logs and are left out of every estimate")
    if e.effective_views < 0.1 * e.views:
        out.append(f"the importance weights leave about {e.effective_views:,.0f} effective views "
                   f"of {e.views:,.0f}: IPS and SNIPS are noisy, prefer DR")
    return OffPolicyEstimate(**{**e.__dict__, "warnings": tuple(out)})
