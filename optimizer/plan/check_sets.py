"""Split traffic (spec section 7) for the checker (`optimizer.plan.check`): every offer set meets
constraints 1-3 on its own, a segment's weights sum to 1, and each offer's share is the total
weight of the sets holding it.

Column-wise like `optimizer.plan.check_offers`: the sets' fields and their offers are read into
columns, every rule is evaluated over whole columns, and only a broken rule costs a line of
Python. Messages come in the order of the sets, then of the segments, then of the offers.
"""

from __future__ import annotations

import operator
from itertools import chain, compress
from operator import methodcaller
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from optimizer.plan.check_catalog import Catalog, positions
from optimizer.plan.columns import Columns, as_floats, is_instance, is_none
from optimizer.plan.model import OfferTable

TOL = 1e-6
Lines = list[tuple[int, int, Any, str]]  # (set, order of the rule, order within, message)


def check_offer_sets(cat: Catalog, sets: Any, offers: OfferTable, bad: list[str]) -> None:
    """Spec section 7 on `sets` (the plan's `offer_sets`), given the plan's offers."""
    if not isinstance(sets, list) or not is_instance(sets, dict).all():
        bad.append("offer_sets: must be a list of objects")
        return
    field = Columns({name: list(map(methodcaller("get", name, default), sets))
                     for name, default in (("segment", None), ("set", None), ("weight", None),
                                           ("explore", False), ("offers", None))})
    segment = field.raw["segment"]
    seg = positions(field.strings("segment"), cat.segment_ids)
    lines: Lines = [(i, 0, 0, f"offer_sets[{i}].segment: must be a segment of the instance, got "
                              f"{segment[i]!r}") for i in np.flatnonzero(seg < 0).tolist()]
    valid = seg >= 0  # the other rules are only checked on sets of a known segment
    weight, w_ok = _set_fields(field, seg, valid, lines)

    held = field.raw["offers"]
    is_list = valid & is_instance(held, list)
    listed = np.flatnonzero(is_list)
    count = np.zeros(len(sets), dtype=np.int64)
    chosen = list(compress(held, is_list))  # the lists of offers, in set order
    count[listed] = list(map(len, chosen))
    flat = list(chain.from_iterable(chosen))
    entry = np.repeat(listed, count[listed])
    not_dict = np.zeros(len(sets), dtype=bool)
    not_dict[entry[~is_instance(flat, dict)]] = True
    lines += [(i, 4, 0, f"offer_sets[{i}].offers: must be a list of objects")
              for i in np.flatnonzero(valid & (~is_list | not_dict)).tolist()]
    keep = ~not_dict[entry]  # the offers of sets whose offers are all objects
    flat, entry = (flat, entry) if keep.all() else (list(compress(flat, keep)), entry[keep])
    sized = np.flatnonzero(is_list & ~not_dict)
    _check_counts(cat, sized, seg[sized], count[sized], lines)

    rows = Columns({name: list(map(methodcaller("get", name), flat))
                    for name in ("bundle", "discount", "perk")})
    j = np.arange(len(entry)) - np.repeat(np.cumsum(count[sized]) - count[sized], count[sized])
    bun = positions(rows.strings("bundle"), cat.bundle_ids)
    _check_within_sets(cat, entry, rows.keys("bundle"), bun, lines)
    lines.sort(key=operator.itemgetter(0, 1, 2))
    bad += [text for _, _, _, text in lines]

    _check_weight_sums(segment, seg, valid, weight, w_ok, bad)
    with_sets = np.zeros(len(cat.segment_ids), dtype=bool)
    with_sets[seg[valid]] = True
    o_seg = positions(offers.strings("segment"), cat.segment_ids)
    lacking = np.flatnonzero((o_seg < 0) | ~with_sets[np.maximum(o_seg, 0)])
    names = set(pd.unique(pd.Series(offers.keys("segment"), dtype=object).iloc[lacking]).tolist())
    bad += [f"segment {s!r}: has offers, so must have offer sets (the plan has offer_sets)"
            for s in sorted(names, key=repr)]
    shown = _Shown(entry, j, segment, rows)
    _check_candidates(cat, seg[entry], bun, rows, shown, bad)
    _check_shares(seg[entry], rows, weight[entry], w_ok[entry], offers, o_seg, with_sets, shown, bad)


class _Shown:
    """How a message shows a set's offer: its place, its segment, its fields as written."""

    def __init__(self, entry: np.ndarray, j: np.ndarray, segment: list[Any], rows: Columns) -> None:
        self.entry, self.j, self.segment, self.rows = entry, j, segment, rows

    def at(self, k: np.ndarray) -> list[tuple[Any, ...]]:
        """(set, offer within it, segment, bundle, discount, perk) of the set offers `k`."""
        fields = (self.rows.raw[name] for name in ("bundle", "discount", "perk"))
        return list(zip(self.entry[k].tolist(), self.j[k].tolist(),
                        [self.segment[e] for e in self.entry[k].tolist()],
                        *([values[i] for i in k.tolist()] for values in fields), strict=True))


def _set_fields(field: Columns, seg: np.ndarray, valid: np.ndarray,
                lines: Lines) -> tuple[np.ndarray, np.ndarray]:
    """The rules on each set's `set`, `weight` and `explore`; its weights, and where they hold."""
    ids, weights, explore = field.raw["set"], field.raw["weight"], field.raw["explore"]
    id_ok = is_instance(ids, str) & np.fromiter(map(operator.truth, ids), dtype=bool, count=len(ids))
    lines += [(i, 1, 0, f"offer_sets[{i}].set: must be a non-empty string, got {ids[i]!r}")
              for i in np.flatnonzero(valid & ~id_ok).tolist()]
    named = np.flatnonzero(valid & id_ok)
    again = named[pd.DataFrame({"s": seg[named], "id": pd.Series(ids, dtype=object).iloc[named]
                                .to_numpy()}).duplicated().to_numpy()]
    segment = field.raw["segment"]
    lines += [(i, 1, 0, f"offer_sets[{i}].set: must be unique within segment {segment[i]!r}, got "
                        f"{ids[i]!r} again") for i in again.tolist()]
    weight, number = field.numbers("weight")
    w_ok = number & (weight > 0) & (weight <= 1)
    lines += [(i, 2, 0, f"offer_sets[{i}].weight: must be in (0, 1], got {weights[i]!r}")
              for i in np.flatnonzero(valid & ~w_ok).tolist()]
    lines += [(i, 3, 0, f"offer_sets[{i}].explore: must be true or false, got {explore[i]!r}")
              for i in np.flatnonzero(valid & ~is_instance(explore, bool)).tolist()]
    return weight, w_ok


def _check_counts(cat: Catalog, sets: np.ndarray, seg: np.ndarray, n: np.ndarray,
                  lines: Lines) -> None:
    """Constraint 3 per set: between lo_eff and hi offers."""
    lo, hi = np.minimum(cat.lo[seg], cat.hi[seg]), cat.hi[seg]
    short = np.flatnonzero(n < lo)  # only these need lo_eff = min(lo, hi, slots)
    lo[short] = np.minimum(lo[short], cat.slots(seg[short]))
    wrong = np.flatnonzero((n < lo) | (n > hi))
    lines += [(i, 5, 0, f"offer_sets[{i}]: must hold between {a} and {b} offers, got {k}")
              for i, a, b, k in zip(sets[wrong].tolist(), lo[wrong].tolist(), hi[wrong].tolist(),
                                    n[wrong].tolist(), strict=True)]


def _check_within_sets(cat: Catalog, entry: np.ndarray, bundle_key: list[Any], bun: np.ndarray,
                       lines: Lines) -> None:
    """Constraints 1 and 2 per set: one variant per bundle, one bundle per exclusion group."""
    encoded = pa.array(bundle_key, type=pa.large_string()).dictionary_encode()
    code = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int64)
    sizes = pd.DataFrame({"entry": entry, "code": code}).groupby(["entry", "code"], sort=False).size()
    dup = sizes[sizes > 1]  # broken rules only
    lines += [(e, 6, repr(b), f"offer_sets[{e}]: at most one variant per bundle, got {k} of "
                              f"bundle {b!r}")
              for (e, c), k in dup.items() for b in [None if c < 0 else encoded.dictionary[c].as_py()]]
    group = np.where(bun >= 0, cat.group[np.maximum(bun, 0)], -1)
    members = pd.DataFrame({"entry": entry, "group": group, "bundle": bun})
    members = members[members["group"] >= 0].drop_duplicates()
    sizes = members.groupby(["entry", "group"], sort=False)["bundle"].transform("size")
    rivals = members[sizes.to_numpy() > 1]  # broken rules only
    for (e, g), held in rivals.groupby(["entry", "group"], sort=False)["bundle"]:
        name, ids = cat.group_names[g], sorted(str(cat.bundle_ids.iloc[b]) for b in held)
        lines.append((e, 7, name, f"offer_sets[{e}]: at most one bundle per exclusion group, got "
                                  f"{len(ids)} in group {name!r} ({', '.join(ids)})"))


def _check_weight_sums(segment: list[Any], seg: np.ndarray, valid: np.ndarray, weight: np.ndarray,
                       w_ok: np.ndarray, bad: list[str]) -> None:
    """A segment's weights sum to 1 (unless one of them is broken: that is the error)."""
    at = np.flatnonzero(valid)
    summed = np.bincount(seg[at], weights=np.where(w_ok[at], weight[at], 0.0))
    broken = np.zeros(len(summed), dtype=bool)
    broken[seg[at[~w_ok[at]]]] = True
    first = at[~pd.Series(seg[at]).duplicated().to_numpy()]  # each segment at its first set
    wrong = first[~broken[seg[first]] & (np.abs(summed[seg[first]] - 1.0) > TOL)]
    bad += [f"segment {segment[i]!r}: offer set weights must sum to 1, got {t!r}"
            for i, t in zip(wrong.tolist(), summed[seg[wrong]].tolist(), strict=True)]


def _check_candidates(cat: Catalog, seg: np.ndarray, bun: np.ndarray, rows: Columns, shown: _Shown,
                      bad: list[str]) -> None:
    """Each offer of a set is a candidate of the set's segment."""
    perk = rows.raw["perk"]
    if not rows.types("perk") <= {str, type(None)}:  # anything else is no perk of any bundle
        perk = pd.Series(perk, dtype=object).where(is_instance(perk, str) | is_none(perk),
                                                   "\0not a perk id").tolist()
    variant = cat.variant_rows(bun, rows.numbers("discount")[0], cat.perk_rows(bun, perk))
    response = cat.response_rows(seg, bun)
    hit = np.flatnonzero((variant >= 0) & (response >= 0))
    ok = np.zeros(len(seg), dtype=bool)
    ok[hit] = cat.economics(seg[hit], response[hit], variant[hit])["candidate"]
    bad += [f"offer_sets[{e}].offers[{j}]: must be a candidate of segment {s!r}, got ({b!r}, {d!r}, "
            f"{p!r})" for e, j, s, b, d, p in shown.at(np.flatnonzero(~ok))]


def _check_shares(seg: np.ndarray, rows: Columns, weight: np.ndarray, w_ok: np.ndarray,
                  offers: Columns, o_seg: np.ndarray, with_sets: np.ndarray, shown: _Shown,
                  bad: list[str]) -> None:
    """Each offer's share is the total weight of the sets holding it, and every offer of a set
    is one of the plan's offers: the same (segment, bundle, discount to 1e-9, perk)."""
    n = len(seg)
    key = _combine(np.r_[seg, o_seg], _codes([*rows.keys("bundle"), *offers.keys("bundle")]))
    key = _combine(key, _discount_codes(rows, offers))
    perks = [*rows.keys("perk"), *offers.keys("perk")]
    key = _combine(key, _codes(perks))
    row_key, offer_key = key[:n], key[n:]
    weight_of = np.bincount(row_key[w_ok], weights=weight[w_ok], minlength=int(key.max(initial=-1)) + 1)
    share = offers.raw["share"]
    numeric = is_instance(share, (int, float))
    got = as_floats(share, numeric)
    expected = weight_of[offer_key] if len(offer_key) else np.zeros(0)
    has_sets = (o_seg >= 0) & with_sets[np.maximum(o_seg, 0)]
    wrong = np.flatnonzero(has_sets & (~numeric | (np.abs(got - expected) > TOL)))
    bad += [f"offers[{k}].share: must be the total weight of the offer sets holding it, {e!r}, got "
            f"{share[k]!r}" for k, e in zip(wrong.tolist(), expected[wrong].tolist(), strict=True)]
    bad += [f"offer_sets[{e}].offers[{j}]: must be one of the plan's offers, got ({s!r}, {b!r}, "
            f"{d!r}, {p!r})" for e, j, s, b, d, p in shown.at(np.flatnonzero(~np.isin(row_key, offer_key)))]


def _codes(keys: list[Any]) -> np.ndarray:
    """Equal keys (strings, or None) get equal codes."""
    array = pa.array(keys, type=pa.large_string())
    return np.asarray(array.dictionary_encode().indices.fill_null(-1).to_numpy(), dtype=np.int64)


def _discount_codes(rows: Columns, offers: Columns) -> np.ndarray:
    """Equal discounts to 1e-9 get equal codes; a value that is no number is keyed by its text."""
    d_rows, n_rows = rows.numbers("discount")
    d_offers, n_offers = offers.numbers("discount")
    d, number = np.r_[d_rows, d_offers], np.r_[n_rows, n_offers]
    number &= ~np.isnan(d)
    codes = np.asarray(pd.factorize(np.round(d, 9) + 0.0)[0], dtype=np.int64)
    text = np.flatnonzero(~number)
    if len(text):
        raw = [*rows.raw["discount"], *offers.raw["discount"]]
        names = pd.Series([repr(raw[i]) for i in text.tolist()], dtype=object)
        codes[text] = codes.max(initial=-1) + 1 + pd.factorize(names)[0]
    return codes


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One code per distinct (a, b) pair."""
    return np.asarray(pd.factorize(a * (int(b.max(initial=0)) + 2) + (b + 1))[0], dtype=np.int64)
