"""A plan's offers for the checker (`optimizer.plan.check`): each offer found in the instance,
with the rules and the claimed figures of a single offer.

Whole columns at a time: the plan's offer table (`optimizer.plan.model.OfferTable`) holds
each field as a column, and every rule is evaluated over them; only a broken rule costs a
line of Python (its message).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import pandas as pd

from optimizer.plan.check_catalog import Catalog, positions
from optimizer.plan.model import CLAIMS, OfferTable

REL_TOL = 1e-6


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
