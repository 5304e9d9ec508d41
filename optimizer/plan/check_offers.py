"""A plan's offers for the checker (`optimizer.plan.check`): each offer found in the instance,
with the rules and the claimed figures of a single offer, and what the offers add up to per
audience and channel (`Contacts`, spec section 8).

Whole columns at a time: the plan's offer table (`optimizer.plan.model.OfferTable`) holds
each field as a column, and every rule is evaluated over them; only a broken rule costs a
line of Python (its message).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from optimizer.plan.check_catalog import Catalog, positions
from optimizer.plan.model import CLAIMS, OfferTable

REL_TOL = 1e-6
TOL = 1e-6  # the slack of the coupling rows, as constraints 1-7 in `optimizer.plan.check`


def match_offers(cat: Catalog, cols: OfferTable, bad: list[str],
                 compare_claims: bool = True) -> pd.DataFrame:
    """The offers that are variants of the instance, in plan order, with their economics
    (spec section 3); a line in `bad` for each offer that is none, is no candidate, has a
    share outside (0, 1] or (with `compare_claims`) claims a figure other than its own."""
    s = cols.floats("share")[0]
    off = np.flatnonzero(~((s > 0) & (s <= 1)))
    bad += [f"offers[{i}].share: must be in (0, 1], got {v!r}"
            for i, v in zip(off.tolist(), cols.shown("share", off), strict=True)]

    seg = positions(cols.raw["segment"], cat.segment_ids)
    bun = positions(cols.raw["bundle"], cat.bundle_ids)
    variant = cat.variant_rows(bun, cols.floats("discount")[0], cat.perk_rows(bun, cols.raw["perk"]))
    response = cat.response_rows(seg, bun)
    hit = np.flatnonzero((variant >= 0) & (response >= 0))
    econ = cat.economics(seg[hit], response[hit], variant[hit])

    lines: list[tuple[int, int, str]] = []  # (offer, order within the offer, message)
    miss = np.flatnonzero((variant < 0) | (response < 0))
    lines += [(i, 0, f"offers[{i}]: must be a variant of a (segment, bundle) response with a "
                     f"discount of the bundle's ladder and one of its perks, got ({sg!r}, {b!r}, "
                     f"{d!r}, {p!r})")
              for i, sg, b, d, p in _rows(cols, ("segment", "bundle", "discount", "perk"), miss)]
    not_candidate = hit[~econ["candidate"]]
    lines += [(i, 0, f"offers[{i}]: must be a candidate (segment not silent, r > 0, margin floor, "
                     f"max_discount, non-negative uplift), got ({sg!r}, {b!r}, discount {d})")
              for i, sg, b, d in _rows(cols, ("segment", "bundle", "discount"), not_candidate)]
    if compare_claims:
        ok = econ["candidate"]
        truths = (econ["ref"], econ["r"], s[hit] * econ["views"] * econ["prob"], s[hit] * econ["value"])
        for k, (field, truth) in enumerate(zip(CLAIMS, truths, strict=True), start=1):
            got, numeric = cols.floats(field)
            with np.errstate(invalid="ignore"):  # inf - inf: no number, so not close
                g, diff = got[hit], np.abs(got[hit] - truth)
            close = np.isfinite(diff) & (diff <= REL_TOL * np.maximum(np.maximum(1.0, np.abs(g)),
                                                                      np.abs(truth)))
            wrong = np.flatnonzero(ok & ~(numeric[hit] & close))
            lines += [(i, k, f"offers[{i}].{field}: must be {t!r}, got {v!r}") for i, t, v in zip(
                hit[wrong].tolist(), truth[wrong].tolist(), cols.shown(field, hit[wrong]), strict=True)]
    lines.sort(key=operator.itemgetter(0, 1))
    bad += [text for _, _, text in lines]

    chosen = pd.DataFrame({"segment": seg[hit], "share": s[hit], **econ})
    chosen["group"] = cat.group[econ["bundle"]]
    return chosen


def _rows(cols: OfferTable, names: tuple[str, ...], at: np.ndarray) -> list[tuple[Any, ...]]:
    """(position, value of each field) at the offers `at`, as messages show them."""
    return list(zip(at.tolist(), *(cols.shown(name, at) for name in names), strict=True))


@dataclass(frozen=True)
class Contacts:
    """The offers' sums per audience and channel (spec section 8), each offer weighted by its
    share (split traffic keeps the rows linear in share, section 7): rows 8-10 and the KPIs
    `contact_cost`, `roi`, `channels` and `audiences`. The contact cost inside each offer's
    value is `Catalog.economics`'."""

    KPIS: ClassVar[tuple[str, ...]] = ("contact_cost", "roi", "channels", "audiences")
    cat: Catalog
    contact_cost: float  # sum share * V_s * c_s
    channel_impressions: np.ndarray  # per channel row: sum share * V_s
    per_customer: np.ndarray  # per audience row: sum share * V_s / N_a
    repeats: pd.Series  # per (audience row, bundle row) of an audience with a repeat cap: sum share

    @classmethod
    def of(cls, cat: Catalog, chosen: pd.DataFrame) -> Contacts:
        """The sums over `chosen` (the offers that are variants); a missing share (NaN) adds
        nothing, as in the plan's other sums."""
        seg = chosen["segment"].to_numpy(dtype=np.int64)
        share = chosen["share"].to_numpy(dtype=np.float64)
        share = np.where(np.isnan(share), 0.0, share)  # an infinite share stays infinite
        seen = share * chosen["views"].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):  # inf * 0: no number, left out as in other sums
            cost = float(np.nansum(seen * cat.contact[seg]))
        audiences, aud, chan = cat.inst.audiences, cat.audience[seg], cat.channel[seg]
        impressions = np.bincount(chan[chan >= 0], weights=seen[chan >= 0],
                                  minlength=len(cat.inst.channels))
        per_audience = np.bincount(aud[aud >= 0], weights=seen[aud >= 0], minlength=len(audiences))
        # row 9 only concerns audiences with a repeat cap: group just their offers
        k = np.append(audiences["max_repeats"].to_numpy(dtype=np.float64), np.nan)
        capped = np.isfinite(k[aud])
        repeats = pd.Series(share[capped]).groupby(
            [aud[capped], chosen["bundle"].to_numpy(dtype=np.int64)[capped]], sort=False).sum()
        return cls(cat, cost, impressions,
                   per_audience / audiences["customers"].to_numpy(dtype=np.float64), repeats)

    def check_rows(self, bad: list[str]) -> None:
        """Rows 8 (frequency cap), 9 (repeat cap) and 10 (channel capacity), each where set."""
        audiences, channels = self.cat.inst.audiences, self.cat.inst.channels
        names, x = audiences["id"].astype(str).to_numpy(), self.per_customer
        cap = audiences["max_offers_per_customer"].to_numpy(dtype=np.float64)
        over = np.flatnonzero(np.isfinite(cap) & (x > cap + TOL * np.maximum(1.0, cap)))
        bad += [f"frequency cap (row 8) of audience {a!r}: offers per customer must be <= {f:g}, "
                f"got {n:.6g}" for a, f, n in sorted(zip(names[over].tolist(), cap[over].tolist(),
                                                          x[over].tolist(), strict=True))]
        if len(self.repeats):
            k = audiences["max_repeats"].to_numpy(dtype=np.float64)
            a, b = (self.repeats.index.get_level_values(i).to_numpy() for i in (0, 1))
            n = self.repeats.to_numpy(dtype=np.float64)
            over = np.flatnonzero(n > k[a] + TOL * np.maximum(1.0, k[a]))
            bundles = self.cat.bundle_ids.astype(str).to_numpy()
            bad += [f"repeat cap (row 9) of audience {i!r}, bundle {j!r}: must be offered in <= "
                    f"{c:g} of its segments, got {m:.6g}" for i, j, c, m in sorted(zip(
                        names[a[over]].tolist(), bundles[b[over]].tolist(), k[a[over]].tolist(),
                        n[over].tolist(), strict=True))]
        capacity, used = channels["capacity"].to_numpy(dtype=np.float64), self.channel_impressions
        over = np.flatnonzero(np.isfinite(capacity) & (used > capacity + TOL * np.maximum(1.0, capacity)))
        bad += [f"capacity (row 10) of channel {c!r}: offer impressions must be <= {f:g}, got {u:.6g}"
                for c, f, u in sorted(zip(channels["id"].astype(str).iloc[over].tolist(),
                                          capacity[over].tolist(), used[over].tolist(), strict=True))]

    def kpis(self, margin: float, spend: float) -> dict[str, Any]:
        """`contact_cost`, `roi` (null when its denominator is 0), and `channels` and `audiences`
        listing those some segment references, in their tables' order; none of them for an
        instance without section 8, so that it is checked exactly as in version 1."""
        inst, cat = self.cat.inst, self.cat
        if not (len(inst.audiences) or len(inst.channels) or (cat.audience >= 0).any()
                or (cat.channel >= 0).any()):
            return {}

        def entries(rows: np.ndarray, ids: pd.Series, figure: np.ndarray, limit: pd.Series,
                    names: tuple[str, str]) -> dict[str, dict[str, float | None]]:
            at = np.unique(rows[rows >= 0])  # sorted rows: the table's order
            return {str(i): {names[0]: float(x), names[1]: None if math.isnan(c) else float(c)}
                    for i, x, c in zip(ids.iloc[at].tolist(), figure[at].tolist(),
                                       limit.to_numpy(dtype=np.float64)[at].tolist(), strict=True)}

        denominator = spend + self.contact_cost
        return {
            "contact_cost": self.contact_cost,
            "roi": margin / denominator if denominator > 0 else None,
            "channels": entries(cat.channel, inst.channels["id"], self.channel_impressions,
                                inst.channels["capacity"], ("impressions", "capacity")),
            "audiences": entries(cat.audience, inst.audiences["id"], self.per_customer,
                                 inst.audiences["max_offers_per_customer"], ("offers_per_customer", "cap")),
        }

    @staticmethod
    def check_kpi(name: str, truth: Any, got: Any, bad: list[str]) -> None:
        """One claimed KPI of `KPIS` against its truth: numbers within REL_TOL, null for null."""
        if name not in ("channels", "audiences"):
            if not _same(truth, got):
                bad.append(f"kpis.{name}: must be {truth!r}, got {got!r}")
            return
        if not isinstance(got, dict) or set(got) != set(truth):
            bad.append(f"kpis.{name}: must list exactly the {name} that segments reference "
                       f"{sorted(truth)}, got {got!r}")
            return
        bad += [f"kpis.{name}.{key}: must be {entry}, got {got[key]!r}" for key, entry in truth.items()
                if not isinstance(got[key], dict)
                or not all(k in got[key] and _same(v, got[key][k]) for k, v in entry.items())]


def _same(truth: float | None, got: Any) -> bool:
    if truth is None:
        return got is None
    if not isinstance(got, int | float):
        return False
    diff = float(got) - truth  # inf - inf or NaN: no number, so not the same
    return math.isfinite(diff) and abs(diff) <= REL_TOL * max(1.0, abs(float(got)), abs(truth))
