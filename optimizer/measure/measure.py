"""`measure`: what a plan realized in its logs, per segment group and in all.

Every figure is a sum over independent binomial cells (a shown cell's purchases, a pair's
holdout purchases), so its variance is the sum of theirs (delta method; exact for the
linear figures, first order for the ratios), and its 95% interval is normal. Views are taken
as given (the figures are conditional on the traffic the logs record). docs/measurement.md
defines each figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.io.fields import Locator
from optimizer.measure.cells import Baselines, baselines, binomial_variance, served_views
from optimizer.measure.economics import economics
from optimizer.measure.logs import ServedLogs, read_served
from optimizer.measure.measurement import Figure, GroupBy, Measurement
from optimizer.measure.plan_sets import expected_per_view, plan_sets
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan

NONE_LABEL = "(none)"


def measure(logs: pd.DataFrame, instance: Instance, plan: Plan, version: int | None = None, *,
            group_by: GroupBy | None = None, locator: Locator | None = None,
            name: str = "logs") -> Measurement:
    """The plan's realized figures from exposures@1 rows (with the optional `plan_version`,
    `set` and `propensity` columns). With `version`, only that plan version's rows count;
    without it the logs must hold a single version (or none named)."""
    served = _of_version(read_served(logs, instance, locator, name), version)
    sets = plan_sets(plan, instance)  # the plan's ids must be the instance's
    by = group_by or default_grouping(instance)
    labels = group_labels(instance, by)
    codes, names = pd.factorize(labels, sort=True)
    sums = _sums(served, instance, plan, codes, len(names))
    groups = _group_rows(_ratios(sums), names)
    total = _ratios(sums.sum().to_frame().T).iloc[0]  # groups are independent: sums add
    shown = served.cells["shown"].to_numpy(bool)
    pairs = served.cells.loc[shown, ["segment", "bundle"]].drop_duplicates()
    unmeasured = int(total["pairs_without_holdout"])
    return Measurement(
        instance=instance.name, currency=instance.currency,
        version=version if version is not None else next(iter(served.versions()), None),
        views=float(total["views"]), holdout_views=float(total["holdout_views"]),
        impressions=float(total["impressions"]), takes=float(total["takes"]),
        take_rate=Figure.of(total["take_rate"], total["take_rate_se"]),
        attach_rate=Figure.of(total["attach_rate"], total["attach_rate_se"]),
        incremental_margin=Figure.of(total["incremental_margin"], total["incremental_margin_se"]),
        incremental_margin_per_view=Figure.of(total["incremental_margin_per_view"],
                                              total["incremental_margin_per_view_se"]),
        aov_increment=Figure.of(total["aov_increment"], total["aov_increment_se"]),
        offer_revenue=float(total["offer_revenue"]),
        promotion_spend=float(total["promotion_spend"]), contact_cost=float(total["contact_cost"]),
        roi=Figure.of(total["roi"], total["roi_se"]),
        expected_incremental_margin=float(total["expected_incremental_margin"]),
        expected_takes=float(total["expected_takes"]), group_by=by, groups=groups,
        baseline={"pairs": float(len(pairs)), "pairs_without_holdout": float(unmeasured),
                  "unlogged_views": float(total["unlogged_views"])},
        warnings=_warnings(served, sets, unmeasured, float(total["holdout_views"])))


def default_grouping(instance: Instance) -> GroupBy:
    """The segments' audience when some segment has one, else their channel, else their
    timing, else each segment on its own."""
    segs = instance.segments
    for column in ("audience", "channel", "timing"):
        if segs[column].notna().any():
            return column
    return "segment"


def group_labels(instance: Instance, by: GroupBy) -> np.ndarray:
    """Each segment's group: a segment with no audience is its own audience (spec section
    8); one with no channel or timing is in the group `(none)`."""
    segs = instance.segments
    ids = segs["id"].to_numpy(dtype=object)
    if by == "segment":
        return ids
    value = segs[by].to_numpy(dtype=object)
    given = pd.notna(value) & (value != "")
    return np.where(given, value, ids if by == "audience" else NONE_LABEL)


def _of_version(served: ServedLogs, version: int | None) -> ServedLogs:
    versions = served.versions()
    if version is not None:
        if version not in versions:
            got = f"versions {', '.join(map(str, versions))}" if versions else \
                "no plan_version column" if not served.has_versions else "no rows"
            raise InputError([Issue(f"{served.name}.plan_version", f"must have rows of plan "
                                    f"version {version}", value_text=got)])
        return served.of_version(version)
    if len(versions) > 1:
        raise InputError([Issue(f"{served.name}.plan_version", "must hold a single plan version "
                                "when no version is chosen", value_text=f"{len(versions)} "
                                f"versions ({', '.join(map(str, versions))})")])
    return served


def _sums(served: ServedLogs, instance: Instance, plan: Plan, segment_group: np.ndarray,
          n: int) -> pd.DataFrame:
    """The sums every figure is made of, and their variances, per group (group codes by
    segment position)."""
    cells = served.cells
    shown = cells[cells["shown"].to_numpy(bool)]
    s, b = shown["segment"].to_numpy(np.int64), shown["bundle"].to_numpy(np.int64)
    econ = economics(instance, s, b, shown["discount"].to_numpy(np.float64),
                     shown["perk"].to_numpy(np.int64))
    base = baselines(served, s, b, econ)
    n_views = shown["views"].to_numpy(np.float64)
    bought = shown["purchases"].to_numpy(np.float64)
    var = binomial_variance(n_views, bought)
    g = segment_group[s]

    def total(x: np.ndarray, group: np.ndarray = g) -> np.ndarray:
        return np.bincount(group, weights=x, minlength=n)

    out = pd.DataFrame({
        "impressions": total(n_views), "takes": total(bought), "takes_var": total(var),
        "offer_revenue": total(bought * econ.revenue),
        "offer_margin": total(bought * econ.margin),
        "promotion_spend": total(bought * econ.spend),
        "contact_cost": total(n_views * econ.contact),
        "displaced_margin": total(n_views * base.rate * econ.list_margin),
        "displaced_revenue": total(n_views * base.rate * econ.list_price),
        "margin_var": total(var * econ.margin**2) + _baseline_var(
            s, b, n_views * econ.list_margin, base, segment_group, n),
        "revenue_var": total(var * econ.revenue**2) + _baseline_var(
            s, b, n_views * econ.list_price, base, segment_group, n),
        "spend_var": total(var * econ.spend**2), "margin_spend_cov": total(var * econ.margin * econ.spend),
    })
    groups = served_views(served)
    out = out.join(_views(groups, segment_group, n)).join(
        _expected(groups, expected_per_view(plan, instance), segment_group, n))
    out["pairs_without_holdout"] = _unmeasured_pairs(s, b, base, segment_group, n)
    return out


def _baseline_var(s: np.ndarray, b: np.ndarray, coefficient: np.ndarray, base: Baselines,
                  segment_group: np.ndarray, n: int) -> np.ndarray:
    """Var of `sum coefficient * baseline rate` per group: rows of one pair share its rate,
    so their coefficients add before the pair's variance is weighed."""
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays([s, b]))
    if not len(codes):
        return np.zeros(n)
    pair_coef = np.bincount(codes, weights=coefficient)
    at = np.unique(codes, return_index=True)[1]
    pair_group = segment_group[s[at]]
    return np.bincount(pair_group, weights=pair_coef**2 * base.variance[at], minlength=n)


def _unmeasured_pairs(s: np.ndarray, b: np.ndarray, base: Baselines, segment_group: np.ndarray,
                      n: int) -> np.ndarray:
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays([s, b]))
    at = np.unique(codes, return_index=True)[1] if len(codes) else np.zeros(0, np.int64)
    return np.bincount(segment_group[s[at]], weights=(~base.measured[at]).astype(float),
                       minlength=n)


def _views(groups: pd.DataFrame, segment_group: np.ndarray, n: int) -> pd.DataFrame:
    """Served, holdout and unlogged (estimated empty-set) views, and segments, per group."""
    g = segment_group[groups["segment"].to_numpy(np.int64)]
    views = groups["views"].to_numpy(np.float64)
    shown = groups["shown"].to_numpy(bool)
    imputed = groups["imputed"].to_numpy(bool)
    return pd.DataFrame({"views": np.bincount(g, views * shown, minlength=n),
                         "holdout_views": np.bincount(g, views * ~shown, minlength=n),
                         "unlogged_views": np.bincount(g, views * imputed, minlength=n),
                         "segments": np.bincount(g[~pd.Series(groups["segment"]).duplicated()],
                                                 minlength=n).astype(float)})


def _expected(groups: pd.DataFrame, per: pd.DataFrame, segment_group: np.ndarray,
              n: int) -> pd.DataFrame:
    """The plan's expectation per view of each segment, times the segment's served views."""
    seg = groups["segment"].to_numpy(np.int64)
    views = groups["views"].to_numpy(np.float64) * groups["shown"].to_numpy(bool)
    g = segment_group[seg]
    return pd.DataFrame({
        "expected_incremental_margin": np.bincount(g, views * per["margin"].to_numpy()[seg],
                                                    minlength=n),
        "expected_takes": np.bincount(g, views * per["takes"].to_numpy()[seg], minlength=n)})


def _ratios(t: pd.DataFrame) -> pd.DataFrame:
    """The figures from the sums: rates, per-view values, ROI, each with its standard error."""
    def div(a: pd.Series | np.ndarray, b: pd.Series) -> np.ndarray:
        d = b.to_numpy(np.float64)
        out: np.ndarray = np.where(d > 0, np.asarray(a, np.float64) / np.where(d > 0, d, 1.0), np.nan)
        return out

    margin = t["offer_margin"] - t["displaced_margin"] - t["contact_cost"]
    revenue = t["offer_revenue"] - t["displaced_revenue"]
    margin_se, takes_se = np.sqrt(t["margin_var"]), np.sqrt(t["takes_var"])
    cost = t["promotion_spend"] + t["contact_cost"]
    roi = div(margin, cost)
    roi_var = t["margin_var"] - 2 * roi * t["margin_spend_cov"] + roi**2 * t["spend_var"]
    return t.assign(
        take_rate=div(t["takes"], t["impressions"]), take_rate_se=div(takes_se, t["impressions"]),
        attach_rate=div(t["takes"], t["views"]), attach_rate_se=div(takes_se, t["views"]),
        incremental_margin=margin, incremental_margin_se=margin_se,
        incremental_margin_per_view=div(margin, t["views"]),
        incremental_margin_per_view_se=div(margin_se, t["views"]),
        aov_increment=div(revenue, t["views"]),
        aov_increment_se=div(np.sqrt(t["revenue_var"]), t["views"]),
        roi=roi, roi_se=div(np.sqrt(np.clip(roi_var, 0, None)), cost),
        expected_per_view=div(t["expected_incremental_margin"], t["views"]),
        realized_over_expected=np.where(t["expected_incremental_margin"] > 0,
                                        margin / t["expected_incremental_margin"].where(
                                            t["expected_incremental_margin"] > 0, 1.0), np.nan))


GROUP_COLUMNS = (
    "group", "segments", "views", "holdout_views", "impressions", "takes", "take_rate",
    "take_rate_lo", "take_rate_hi", "attach_rate", "incremental_margin", "incremental_margin_lo",
    "incremental_margin_hi",
    "incremental_margin_per_view", "incremental_margin_per_view_lo",
    "incremental_margin_per_view_hi", "expected_incremental_margin", "expected_per_view",
    "realized_over_expected", "aov_increment", "promotion_spend", "contact_cost", "roi",
    "pairs_without_holdout")


def _group_rows(table: pd.DataFrame, names: np.ndarray) -> pd.DataFrame:
    """The groups the logs hold (some served or holdout view), in label order, with 95%
    intervals of the take rate and the incremental margin in all and per view."""
    from optimizer.measure.measurement import Z

    out = table.assign(group=list(names))
    for name in ("take_rate", "incremental_margin", "incremental_margin_per_view"):
        out[f"{name}_lo"] = out[name] - Z * out[f"{name}_se"]
        out[f"{name}_hi"] = out[name] + Z * out[f"{name}_se"]
    logged = (out["views"] + out["holdout_views"]) > 0
    return out.loc[logged, list(GROUP_COLUMNS)].reset_index(drop=True)


def _warnings(served: ServedLogs, sets: pd.DataFrame, unmeasured: int,
              holdout_views: float) -> tuple[str, ...]:
    out = []
    if holdout_views == 0:
        out.append("the logs hold no holdout views: incremental figures rest on the instance's "
                   "baseline rates, and their intervals leave that uncertainty out")
    elif unmeasured:
        out.append(f"{unmeasured} (segment, bundle) pairs were shown with no holdout view: "
                   "their baseline is the instance's baseline_rate, taken as known")
    if served.has_sets:
        planned = pd.MultiIndex.from_frame(sets[["segment", "set"]])
        shown = served.cells[served.cells["shown"].to_numpy(bool)]
        logged = pd.MultiIndex.from_frame(shown[["segment", "set"]]).unique()
        foreign = int((~logged.isin(planned)).sum())
        if foreign:
            out.append(f"{foreign} offer sets in the logs are not sets of the plan (another "
                       "plan version's?): measured as served, but the plan expects nothing of them")
    if not served.has_versions:
        out.append("the logs have no plan_version column: every row is taken as this plan's")
    return tuple(out)
