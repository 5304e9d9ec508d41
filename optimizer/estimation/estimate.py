"""Responses from experiment logs: baseline, take rate, price sensitivity and perk lifts.

Shown arms follow the spec's response curve,
`P(take) = sigmoid(a[s, b] + beta[s, b] * discount + lift[b, perk])`, so `take_rate =
sigmoid(a)` and `price_sensitivity = beta` (constrained >= 0); holdout arms give
`baseline_rate = sigmoid(c[s, b])`. Perk lifts are shared by all segments of a bundle.
`pooled` estimates shrink every cell toward its bundle's and segment's effects
(`optimizer.estimation.pooling`); `naive` ones are per-cell maximum likelihood.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.estimation.exposures import Exposures
from optimizer.estimation.glm import CellFit, Rows, fit_cells, logit, sigmoid
from optimizer.estimation.pooling import Grouping, pooled_fit
from optimizer.model.instance import Instance

Method = Literal["pooled", "naive"]
LEVEL = 0.90
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)
LOGIT_BOUND = 15.0  # |logit| cap: a cell with no purchases gets a rate near 3e-7, not 0
MAX_SENSITIVITY = 60.0
LIFT_BOUND = 10.0
NAIVE_ROUNDS = 200
RESPONSE_COLUMNS = ("segment", "bundle", "take_rate", "baseline_rate", "price_sensitivity")


@dataclass(frozen=True)
class Estimates:
    """Estimated responses (spec columns plus uncertainty and provenance) and perk lifts."""

    responses: pd.DataFrame
    perks: pd.DataFrame
    method: Method
    pooling: dict[str, float]
    warnings: tuple[str, ...] = ()

    def to_instance(self, instance: Instance) -> Instance:
        """The instance with these responses, and these perk lifts where the logs had perk arms.
        Responses of the instance that were not estimated (naive estimates of pairs without
        shown views) stay as they were."""
        estimated = self.responses.loc[:, list(RESPONSE_COLUMNS)]
        given = instance.responses.loc[:, list(RESPONSE_COLUMNS)]
        done = pd.MultiIndex.from_frame(estimated[["segment", "bundle"]])
        left = ~pd.MultiIndex.from_frame(given[["segment", "bundle"]]).isin(done)
        responses = pd.concat([estimated, given[left]], ignore_index=True)
        lifts = self.perks.set_index(["bundle", "perk"])["lift"]
        keys = pd.MultiIndex.from_arrays([instance.perks["bundle"], instance.perks["id"]])
        perks = instance.perks.assign(lift=lifts.reindex(keys).to_numpy())
        return dataclasses.replace(instance, responses=responses, perks=perks, warnings=())


def estimate(instance: Instance, logs: Exposures, method: Method = "pooled",
             conservative: float | None = None) -> Estimates:
    if conservative is not None and not 0 < conservative < 1:
        raise InputError([Issue("--conservative", "must be in (0, 1)", conservative)])
    _require_shown_views(logs)
    cells = _cells(instance, logs)
    groups = Grouping(cells["b"].to_numpy(), cells["s"].to_numpy(), len(instance.bundles),
                      len(instance.segments))
    cell_of_arm = pd.MultiIndex.from_frame(cells[["s", "b"]]).get_indexer(
        pd.MultiIndex.from_arrays([logs.segment, logs.bundle]))
    take, lifts, take_pool = _take_model(instance, logs, cell_of_arm, groups, method)
    baseline, base_pool, warnings = _baseline_model(instance, logs, cell_of_arm, groups, method,
                                                    logit(take["take_rate"]))
    out = _without_data(instance, cells.assign(**take, **baseline), warnings)
    keep = out["take_source"] != "none"
    if (~keep).any():
        warnings.append(f"{int((~keep).sum())} (segment, bundle) pairs had no shown views and "
                        "were left out (an instance written with them keeps their responses "
                        "unchanged): naive estimates need data in every cell")
    out = out[keep]
    if conservative is not None:
        out = _conservative(instance, out, conservative)
    seg_ids = instance.segments["id"].to_numpy(dtype=object)
    bundle_ids = instance.bundles["id"].to_numpy(dtype=object)
    out.insert(0, "bundle", bundle_ids[out["b"].to_numpy()])
    out.insert(0, "segment", seg_ids[out["s"].to_numpy()])
    pooling = {"take_logit_tau": take_pool[0], "sensitivity_tau": take_pool[1],
               "baseline_logit_tau": base_pool}
    order = [*RESPONSE_COLUMNS, *(c for c in out.columns if c not in (*RESPONSE_COLUMNS, "s", "b"))]
    counts = ["shown_views", "shown_purchases", "holdout_views", "holdout_purchases"]
    out = out.astype(dict.fromkeys(counts, np.int64))
    return Estimates(out.loc[:, order].reset_index(drop=True), lifts, method, pooling, tuple(warnings))


def _require_shown_views(logs: Exposures) -> None:
    """No shown views at all: there is nothing to estimate a take rate from, and every
    estimate would be the model's prior, not data."""
    if (logs.views[logs.shown] > 0).any():
        return
    holdout = int(logs.views[~logs.shown].sum())
    got = "no rows" if len(logs) == 0 else \
        f"{len(logs)} arms, with 0 shown views and {holdout} holdout views"
    raise InputError([Issue(logs.name, "must hold at least one shown row (shown = 1) with "
                            "views > 0 to estimate from", value_text=got)])


def _without_data(instance: Instance, out: pd.DataFrame, warnings: list[str]) -> pd.DataFrame:
    """Cells whose bundle has no shown views in any segment get no pooled estimate (there is
    nothing about the bundle to pool): their responses stay as the instance has them, flagged
    `instance`; a pair with no response in the instance either is left out."""
    shown = out["take_source"] == "data"
    informed = np.bincount(out.loc[shown, "b"].to_numpy(), minlength=len(instance.bundles)) > 0
    blind = (out["take_source"] == "pooled").to_numpy() & ~informed[out["b"].to_numpy()]
    if not blind.any():
        return out
    r = instance.responses
    key = pd.MultiIndex.from_arrays([
        pd.Index(instance.segments["id"]).get_indexer(r["segment"]),
        pd.Index(instance.bundles["id"]).get_indexer(r["bundle"])])
    at = key.get_indexer(pd.MultiIndex.from_frame(out[["s", "b"]]))
    given = blind & (at >= 0)
    rows = at[given]
    nan = np.nan
    out = out.copy()
    out.loc[given, "take_rate"] = r["take_rate"].to_numpy(dtype=np.float64)[rows]
    out.loc[given, "price_sensitivity"] = r["price_sensitivity"].to_numpy(dtype=np.float64)[rows]
    for column in ("take_rate_se", "take_rate_lo", "take_rate_hi", "price_sensitivity_se",
                   "price_sensitivity_lo", "price_sensitivity_hi"):
        out.loc[given, column] = nan
    out.loc[given, "take_source"] = "instance"
    base_blind = given & (out["baseline_source"] == "pooled").to_numpy()
    if base_blind.any():  # pooled toward a take rate that is not an estimate: kept too
        out.loc[base_blind, "baseline_rate"] = \
            r["baseline_rate"].to_numpy(dtype=np.float64)[at[base_blind]]
        for column in ("baseline_rate_se", "baseline_rate_lo", "baseline_rate_hi"):
            out.loc[base_blind, column] = nan
        out.loc[base_blind, "baseline_source"] = "instance"
    if given.any():
        warnings.append(f"{int(given.sum())} responses had no shown views, in any segment of "
                        "their bundle: kept unchanged from the instance (take_source "
                        "'instance'), not estimated")
    dropped = blind & (at < 0)
    if dropped.any():
        warnings.append(f"{int(dropped.sum())} (segment, bundle) pairs of the logs had no shown "
                        "views in any segment of their bundle and no response in the instance: "
                        "left out")
    return out[~dropped]


def _cells(instance: Instance, logs: Exposures) -> pd.DataFrame:
    """Every (segment, bundle) pair of the logs or of the instance's responses."""
    seg = pd.Index(instance.segments["id"]).get_indexer(instance.responses["segment"])
    bnd = pd.Index(instance.bundles["id"]).get_indexer(instance.responses["bundle"])
    pairs = pd.DataFrame({"s": np.concatenate([logs.segment, seg]),
                          "b": np.concatenate([logs.bundle, bnd])})
    return pairs.drop_duplicates().sort_values(["s", "b"]).reset_index(drop=True)


def _take_model(instance: Instance, logs: Exposures, cell_of_arm: np.ndarray, groups: Grouping,
                method: Method) -> tuple[dict[str, np.ndarray], pd.DataFrame, tuple[float, float]]:
    cells = len(groups.bundle)
    arm = logs.shown & (logs.views > 0)
    cell, perk = cell_of_arm[arm], logs.perk[arm]
    n, y = logs.views[arm].astype(np.float64), logs.purchases[arm].astype(np.float64)
    x = np.column_stack([np.ones(len(n)), logs.discount[arm]])
    lift = instance.perks["lift"].to_numpy(dtype=np.float64).copy()
    with_perk = perk >= 0
    perk_views = np.bincount(perk[with_perk], n[with_perk], minlength=len(lift))
    lift_info = np.zeros(len(lift))

    def rows() -> Rows:
        return Rows(cell, x, np.where(with_perk, lift[perk.clip(0)], 0.0), n, y)

    def update_lifts(fit: CellFit) -> None:
        base = np.einsum("rp,rp->r", x, fit.theta[cell])
        for _ in range(3):
            mu = sigmoid(base[with_perk] + lift[perk[with_perk]])
            grad = np.bincount(perk[with_perk], y[with_perk] - n[with_perk] * mu, minlength=len(lift))
            lift_info[:] = np.bincount(perk[with_perk], n[with_perk] * mu * (1 - mu),
                                       minlength=len(lift))
            step = np.divide(grad, lift_info, out=np.zeros(len(lift)), where=lift_info > 0)
            lift[:] = np.clip(lift + step, -LIFT_BOUND, LIFT_BOUND)

    has_data = np.bincount(cell, n, minlength=cells) > 0
    shown_y = np.bincount(cell, y, minlength=cells)
    shown_n = np.bincount(cell, n, minlength=cells)
    start = np.column_stack([np.log((shown_y + 0.5) / (shown_n - shown_y + 0.5)), np.ones(cells)])
    lower, upper = np.array([-LOGIT_BOUND, 0.0]), np.array([LOGIT_BOUND, MAX_SENSITIVITY])
    if method == "pooled":
        pooled = pooled_fit(rows, cells, groups, start, lower, upper, has_data, update_lifts)
        fit, tau = pooled.fit, tuple(float(t) for t in np.sqrt(pooled.tau2))
        source = np.where(has_data, "data", "pooled")
    else:
        fit = fit_cells(rows(), cells, start, lower, upper)
        for _ in range(NAIVE_ROUNDS):
            before = lift.copy()
            update_lifts(fit)
            fit = fit_cells(rows(), cells, fit.theta, lower, upper)
            if np.abs(lift - before).max(initial=0.0) < 1e-10:
                break
        tau = (float("inf"), float("inf"))
        source = np.where(has_data, "data", "none")
    a, beta = fit.theta[:, 0], fit.theta[:, 1]
    se_a, se_beta = np.sqrt(fit.cov[:, 0, 0]), np.sqrt(fit.cov[:, 1, 1])
    take = sigmoid(a)
    columns = {
        "take_rate": take, "price_sensitivity": beta,
        "take_rate_se": take * (1 - take) * se_a,
        "take_rate_lo": sigmoid(a - Z * se_a), "take_rate_hi": sigmoid(a + Z * se_a),
        "price_sensitivity_se": se_beta,
        "price_sensitivity_lo": np.maximum(0.0, beta - Z * se_beta),
        "price_sensitivity_hi": beta + Z * se_beta,
        "shown_views": shown_n, "shown_purchases": shown_y, "take_source": source,
    }
    return columns, _lift_table(instance, lift, lift_info, perk_views), (tau[0], tau[1])


def _lift_table(instance: Instance, lift: np.ndarray, info: np.ndarray,
                views: np.ndarray) -> pd.DataFrame:
    se = np.divide(1.0, np.sqrt(info), out=np.full(len(lift), np.nan), where=info > 0)
    estimated = views > 0
    return pd.DataFrame({
        "bundle": instance.perks["bundle"].to_numpy(), "perk": instance.perks["id"].to_numpy(),
        "lift": lift, "lift_se": se, "lift_lo": lift - Z * se, "lift_hi": lift + Z * se,
        "views": views, "source": np.where(estimated, "data", "instance"),
    })


def _baseline_model(instance: Instance, logs: Exposures, cell_of_arm: np.ndarray, groups: Grouping,
                    method: Method, take_logit: np.ndarray,
                    ) -> tuple[dict[str, np.ndarray], float, list[str]]:
    """Holdout arms; pooled toward bundle and segment effects plus a multiple of the cell's
    take-rate logit: viewers keen on a bundle both accept offers and buy it anyway."""
    cells = len(groups.bundle)
    arm = ~logs.shown & (logs.views > 0)
    cell = cell_of_arm[arm]
    n, y = logs.views[arm].astype(np.float64), logs.purchases[arm].astype(np.float64)
    hold_n = np.bincount(cell, n, minlength=cells)
    hold_y = np.bincount(cell, y, minlength=cells)
    has_data = hold_n > 0
    warnings: list[str] = []
    if not has_data.any():
        warnings.append("no holdout views in the logs: baseline_rate kept from the instance "
                        "(0 where it has none), so uplift may be overstated")
        given = _instance_baseline(instance, groups)
        nan = np.full(cells, np.nan)
        return {"baseline_rate": given, "baseline_rate_se": nan, "baseline_rate_lo": nan,
                "baseline_rate_hi": nan, "holdout_views": hold_n, "holdout_purchases": hold_y,
                "baseline_source": np.full(cells, "instance")}, float("nan"), warnings
    rows = Rows(cell, np.ones((len(n), 1)), np.zeros(len(n)), n, y)
    start = np.log((hold_y + 0.5) / (hold_n - hold_y + 0.5))[:, None]
    lower, upper = np.array([-LOGIT_BOUND]), np.array([LOGIT_BOUND])
    if method == "pooled":
        pooled = pooled_fit(lambda: rows, cells, groups, start, lower, upper, has_data,
                            covariate=take_logit)
        fit, tau = pooled.fit, float(np.sqrt(pooled.tau2[0]))
        source = np.where(has_data, "data", "pooled")
    else:
        fit, tau = fit_cells(rows, cells, start, lower, upper), float("inf")
        given = logit(np.clip(_instance_baseline(instance, groups), 1e-12, 1 - 1e-12))
        fit = CellFit(np.where(has_data[:, None], fit.theta, given[:, None]),
                      np.where(has_data[:, None, None], fit.cov, np.nan))
        source = np.where(has_data, "data", "instance")
    c, se = fit.theta[:, 0], np.sqrt(fit.cov[:, 0, 0])
    base = sigmoid(c)
    return {"baseline_rate": base, "baseline_rate_se": base * (1 - base) * se,
            "baseline_rate_lo": sigmoid(c - Z * se), "baseline_rate_hi": sigmoid(c + Z * se),
            "holdout_views": hold_n, "holdout_purchases": hold_y,
            "baseline_source": source}, tau, warnings


def _instance_baseline(instance: Instance, groups: Grouping) -> np.ndarray:
    r = instance.responses
    key = pd.MultiIndex.from_arrays([
        pd.Index(instance.segments["id"]).get_indexer(r["segment"]),
        pd.Index(instance.bundles["id"]).get_indexer(r["bundle"])])
    given = pd.Series(r["baseline_rate"].fillna(0.0).to_numpy(), index=key)
    out: np.ndarray = given.reindex(pd.MultiIndex.from_arrays([groups.segment, groups.bundle])) \
        .fillna(0.0).to_numpy(dtype=np.float64)
    return out


def _conservative(instance: Instance, out: pd.DataFrame, q: float) -> pd.DataFrame:
    """Move take and baseline rates so that `take - baseline` sits at its q-quantile.

    At list price the value is `V * m0 * (take - baseline)`, so this is the q-quantile of
    the cell's incremental value there (the (1-q)-quantile of the rates if m0 < 0).
    Each rate moves in proportion to its own variance (normal approximation).
    """
    prices = instance.bundle_prices()
    m0 = (prices["price"] - prices["unit_cost"]).to_numpy()[out["b"].to_numpy()]
    z = NormalDist().inv_cdf(q) * np.where(m0 < 0, -1.0, 1.0)
    var_t = np.nan_to_num(out["take_rate_se"].to_numpy()) ** 2  # kept responses: no se
    var_b = np.nan_to_num(out["baseline_rate_se"].to_numpy()) ** 2
    sd = np.sqrt(var_t + var_b)
    shift = np.divide(z, sd, out=np.zeros(len(out)), where=sd > 0)
    return out.assign(
        take_rate=np.clip(out["take_rate"] + shift * var_t, sigmoid(np.array(-LOGIT_BOUND)),
                          sigmoid(np.array(LOGIT_BOUND))),
        baseline_rate=np.clip(out["baseline_rate"] - shift * var_b, 0.0,
                              sigmoid(np.array(LOGIT_BOUND))),
    )
