"""Mined rules as cross-sell bundles of an instance, with optional per-segment priors.

A rule `anchor -> others` with a single-item antecedent becomes the bundle of all its items
(the anchor first), kind `cross_sell`: offered to a customer who buys the anchor, it is the
set the log shows selling together. The strongest rules are taken (lift, then confidence,
then support), one per itemset, and only those whose items are all in the catalog:

- its id is its item ids joined by '+', the anchor first, with '%', '+' and '~' escaped in
  them (`bundle_id`), and a stable hash added when the catalog has that id for other items;
- the bundle's price is left out, so its price is its **reference price**, the sum of its
  items' own catalog prices (one of each: mining counts presence, not quantities);
- bundles sharing an anchor item share the exclusion group `mined:ANCHOR`, so a segment is
  shown at most one cross-sell per anchor;
- with a customer -> segment table (`offeropt segment --assignments`), each bundle gets a
  response in every instance segment named like an RFM segment (its id, or its audience).
  Its take rate is the rule's confidence among that segment's orders, shrunk toward the
  rule's overall confidence by `prior_orders` pseudo-orders: (n(S) + k * confidence) /
  (n(anchor) + k), within [0.0001, 0.9999]; its baseline rate `baseline_share` times that.

The instance is rebuilt through the validator, so what is written is a valid instance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.io import instance_from_document
from optimizer.io.json_form import instance_to_document
from optimizer.io.tables import read_table_file
from optimizer.mining.mine import MAX_SIZE, Mined
from optimizer.model.instance import Instance

TAKE_RATE_RANGE = (1e-4, 1.0 - 1e-4)  # take_rate must lie in (0, 1)
GROUP_PREFIX = "mined:"
MAX_BUNDLES = 1_000
ID_SEPARATOR = "+"  # between the item ids of a mined bundle's id
ID_ESCAPES = (("%", "%25"), ("+", "%2B"), ("~", "%7E"))  # '%' first: the escaping is reversible
HASH_MARK = "~"  # before the hash that sets a mined id apart from a catalog bundle's


@dataclass(frozen=True)
class BundleOptions:
    max_bundles: int = 20
    max_items: int = 2  # items per bundle, the anchor included
    prior_orders: float = 10.0  # pseudo-orders at the rule's overall confidence
    baseline_share: float = 0.0  # baseline_rate = baseline_share * take_rate
    add_segments: bool = False  # an RFM segment no instance segment names becomes one

    def __post_init__(self) -> None:
        issues = []
        if not (isinstance(self.max_bundles, int) and 1 <= self.max_bundles <= MAX_BUNDLES):
            issues.append(Issue("--bundles", f"must be an integer in [1, {MAX_BUNDLES:,}]",
                                self.max_bundles))
        if not (isinstance(self.max_items, int) and 2 <= self.max_items <= MAX_SIZE):
            issues.append(Issue("--bundle-items", f"must be an integer in [2, {MAX_SIZE}]",
                                self.max_items))
        if not (np.isfinite(self.prior_orders) and self.prior_orders >= 0):
            issues.append(Issue("--prior-orders", "must be a finite number >= 0",
                                self.prior_orders))
        if not 0 <= self.baseline_share < 1:
            issues.append(Issue("--baseline-share", "must be a number in [0, 1)",
                                self.baseline_share))
        if issues:
            raise InputError(issues)


@dataclass(frozen=True, eq=False)
class BundleResult:
    instance: Instance
    bundles: pd.DataFrame  # id, anchor, items, reference_price, exclusion_group, rule metrics
    responses: pd.DataFrame  # segment, bundle, take_rate, baseline_rate, anchor_orders, orders
    candidates: int  # distinct itemsets of single-anchor rules
    skipped: int  # of those, naming an item the catalog lacks
    missing_items: tuple[str, ...]  # such items, the most frequent first
    segments_added: tuple[str, ...]
    segments_unmatched: tuple[str, ...]  # RFM segments no instance segment names (not added)
    orders_unsegmented: int  # orders whose customer has no segment


def read_assignments(path: str | Path) -> pd.Series:
    """customer -> segment, from the `--assignments` file of `offeropt segment` (CSV or
    Parquet with the columns `customer` and `segment`; other columns are ignored)."""
    frame, loc = read_table_file(path)
    name = Path(path).name
    missing = [c for c in ("customer", "segment") if c not in frame.columns]
    if missing:
        raise InputError([Issue(name, f"must have a column {c!r} (as `offeropt segment "
                                "--assignments` writes)", has_value=False) for c in missing])
    text = {c: frame[c].astype("string").str.strip().fillna("") for c in ("customer", "segment")}
    issues = [Issue(loc.path(int(i), c), "must be given", value_text="nothing")
              for c in ("customer", "segment") for i in np.flatnonzero(text[c].to_numpy() == "")[:50]]
    repeated = text["customer"].duplicated().to_numpy() & (text["customer"].to_numpy() != "")
    issues += [Issue(loc.path(int(i), "customer"), "must be unique (one segment per customer)",
                     text["customer"].iloc[i]) for i in np.flatnonzero(repeated)[:50]]
    if issues:
        raise InputError(issues)
    return pd.Series(text["segment"].to_numpy(dtype=object),
                     index=pd.Index(text["customer"].to_numpy(dtype=object), name="customer"),
                     name="segment")


def write_bundles(instance: Instance, mined: Mined, options: BundleOptions = BundleOptions(),
                  assignments: pd.Series | None = None) -> BundleResult:
    """`instance` with the strongest mined rules added as cross-sell bundles (and, given
    `assignments`, responses per matching segment)."""
    baskets, sets, rules = mined.baskets, mined.itemsets, mined.rules
    if assignments is not None and baskets.customers is None:
        raise InputError([Issue("--segments", "must go with a log that names each order's "
                                "customer (--customer-column)",
                                value_text="a log without a customer column")])
    candidates = _candidates(mined, options.max_items)
    if len(candidates) == 0:
        raise InputError([Issue("--write-bundles", "needs at least one rule with a single-item "
                                "antecedent (lower --min-support or --min-confidence)",
                                value_text=f"{len(rules)} rules, none of them")])
    catalog = pd.Index(instance.items["id"].astype(object))
    price = instance.items["price"].to_numpy(dtype=np.float64)
    name = instance.items["name"].astype(object).to_numpy()
    position = catalog.get_indexer(pd.Index(baskets.items))  # catalog row per item code, -1
    codes = sets.items[rules.itemset[candidates]]
    known = np.where(codes >= 0, position[np.maximum(codes, 0)] >= 0, True).all(axis=1)
    missing = _missing(codes[~known], position, baskets.items)
    if not known.any():
        raise InputError([Issue("--write-bundles", "must be a catalog holding the mined items",
                                value_text=f"none of the {len(candidates)} mined itemsets' items "
                                "all in it (e.g. " + ", ".join(map(repr, missing[:5])) + ")")])
    chosen = candidates[known][:options.max_bundles]

    anchor = sets.items[rules.antecedent[chosen], 0]
    taken, used, before = _catalog_bundles(instance), set[str](), []
    rows = []
    for k, r in enumerate(chosen):
        items = [int(c) for c in sets.items[rules.itemset[r]] if c >= 0]
        items = [int(anchor[k])] + [c for c in items if c != anchor[k]]
        ids = [str(baskets.items[c]) for c in items]
        pos = position[items]
        bundle = _bundle_id(ids, taken, used)
        if bundle is None:
            before.append(bundle_id(ids))
        rows.append({
            "id": bundle, "anchor": ids[0], "items": ids,
            "name": " + ".join(str(n) if isinstance(n, str) and n else i
                               for n, i in zip(name[pos], ids, strict=True)),
            "reference_price": float(price[pos].sum()), "lift": float(rules.lift[r]),
            "confidence": float(rules.confidence[r]), "support": float(rules.support[r]),
            "orders": int(rules.orders[r]), "anchor_orders": int(rules.antecedent_orders[r]),
        })
    if before:
        raise InputError([Issue("--write-bundles", "must be a catalog without the mined bundles "
                                "(it holds them, mined before: mine into the original catalog)",
                                before)])
    bundles = pd.DataFrame(rows)
    shared = bundles["anchor"].map(bundles["anchor"].value_counts()) > 1
    bundles["exclusion_group"] = pd.Series(
        [GROUP_PREFIX + a if s else None for a, s in zip(bundles["anchor"], shared, strict=True)],
        dtype=object)

    doc = instance_to_document(instance)
    for b in bundles.itertuples():
        doc["bundles"].append({"id": b.id, "name": b.name, "kind": "cross_sell",
                               "items": [{"item": i, "qty": 1} for i in b.items],
                               "exclusion_group": b.exclusion_group
                               if isinstance(b.exclusion_group, str) else None})
    responses, added, unmatched, unsegmented = _responses(instance, mined, chosen, assignments,
                                                          options, bundles, doc)
    doc["responses"].extend(
        {"segment": r.segment, "bundle": r.bundle, "take_rate": r.take_rate,
         "baseline_rate": r.baseline_rate} for r in responses.itertuples())
    new = instance_from_document(doc, origin=instance.name)
    return BundleResult(new, bundles, responses, len(candidates), int((~known).sum()),
                        tuple(missing), added, unmatched, unsegmented)


def bundle_id(items: list[str]) -> str:
    """A mined bundle's readable id: its item ids, the anchor first, joined by '+', with
    '%', '+' and '~' in an item id escaped as %25, %2B and %7E (so that the id names one list
    of items, and never holds the '~' of a hashed id)."""
    escaped = []
    for item in items:
        for char, code in ID_ESCAPES:
            item = item.replace(char, code)
        escaped.append(item)
    return ID_SEPARATOR.join(escaped)


def _bundle_id(items: list[str], taken: dict[str, frozenset[str]],
               used: set[str]) -> str | None:
    """`bundle_id`, or, when the catalog already has a bundle of that id with other items,
    that id + '~' + 8 hex digits of its SHA-256 (stable from run to run; all 64 should two
    hashed ids of this run share 8). None when the catalog has a bundle of that id and of the
    same items: this bundle, mined before. `used` gathers the ids of this run."""
    plain = bundle_id(items)
    candidate = plain
    if plain in taken and taken[plain] != frozenset(items):
        digest = hashlib.sha256(plain.encode("utf-8")).hexdigest()
        candidate = f"{plain}{HASH_MARK}{digest[:8]}"
        if candidate in used or candidate in taken:
            candidate = f"{plain}{HASH_MARK}{digest}"
    if candidate in taken or candidate in used:
        return None
    used.add(candidate)
    return candidate


def _catalog_bundles(instance: Instance) -> dict[str, frozenset[str]]:
    """Each catalog bundle's id -> the ids of its items."""
    bi = instance.bundle_items
    items: dict[str, set[str]] = {}
    for bundle, item in zip(bi["bundle"].astype(object), bi["item"].astype(object), strict=True):
        items.setdefault(str(bundle), set()).add(str(item))
    return {str(b): frozenset(items.get(str(b), ())) for b in instance.bundles["id"].astype(object)}


def _candidates(mined: Mined, max_items: int) -> np.ndarray:
    """Rules that may become bundles, strongest first: a single-item antecedent (the
    anchor), at most `max_items` items, the strongest rule of its itemset; in a bundle of
    three or more items every other item sells with the anchor on its own too (the rule
    `anchor -> item` is kept), so that no item rides along on another's association."""
    sets, rules = mined.itemsets, mined.rules
    anchor_size, whole_size = sets.size[rules.antecedent], sets.size[rules.itemset]
    single = np.flatnonzero((anchor_size == 1) & (whole_size <= max_items))
    _, first = np.unique(rules.itemset[single], return_index=True)
    picked = single[np.sort(first)]  # the strongest rule of each itemset, strongest first
    n = max(mined.baskets.n_items, 1)
    pair = np.flatnonzero((anchor_size == 1) & (whole_size == 2))
    pairs = (sets.items[rules.antecedent[pair], 0].astype(np.int64) * n
             + sets.items[rules.consequent[pair], 0])
    anchor = sets.items[rules.antecedent[picked], 0].astype(np.int64)
    items = sets.items[rules.itemset[picked]]
    with_anchor = np.isin(anchor[:, None] * n + items, pairs) | (items < 0) | (items == anchor[:, None])
    return picked[with_anchor.all(axis=1)]


def _missing(codes: np.ndarray, position: np.ndarray, items: np.ndarray) -> list[str]:
    """Items of `codes` not in the catalog, the most frequent among them first."""
    flat = codes[codes >= 0]
    flat = flat[position[flat] < 0]
    values, counts = np.unique(flat, return_counts=True)
    return [str(items[v]) for v in values[np.argsort(-counts, kind="stable")]]


def _responses(instance: Instance, mined: Mined, chosen: np.ndarray,
               assignments: pd.Series | None, options: BundleOptions, bundles: pd.DataFrame,
               doc: dict[str, Any]) -> tuple[pd.DataFrame, tuple[str, ...], tuple[str, ...], int]:
    """Per (instance segment, bundle) take-rate priors; segments added to `doc` when asked."""
    columns = ["segment", "bundle", "take_rate", "baseline_rate", "anchor_orders", "orders"]
    if assignments is None:
        return pd.DataFrame(columns=columns), (), (), 0
    baskets, sets, rules = mined.baskets, mined.itemsets, mined.rules
    assert baskets.customers is not None
    segment_of_order = pd.Series(baskets.customers).map(assignments)
    unsegmented = int(segment_of_order.isna().sum())
    code, groups = pd.factorize(segment_of_order.dropna().astype(object), sort=True)
    g = np.full(baskets.n_orders, -1, dtype=np.int64)
    g[segment_of_order.notna().to_numpy()] = code
    n_groups = len(groups)
    orders_per_group = np.bincount(g[g >= 0], minlength=n_groups)

    segs = instance.segments
    targets: list[tuple[str, int]] = []  # (instance segment id, RFM group)
    added, unmatched = [], []
    for k, group in enumerate(groups):
        named = segs["id"].astype(object).eq(group) | segs["audience"].astype(object).eq(group)
        ids = [str(s) for s in segs.loc[named.to_numpy(dtype=bool), "id"]]
        if not ids and options.add_segments:
            doc["segments"].append({"id": group, "views": int(orders_per_group[k])})
            ids = [group]
            added.append(group)
        elif not ids:
            unmatched.append(group)
        targets += [(s, k) for s in ids]

    csc = baskets.matrix.tocsc()
    out = []
    for b, r in zip(bundles.itertuples(), chosen, strict=True):
        items = sets.items[rules.itemset[r]]
        items = items[items >= 0]
        anchor_code = sets.items[rules.antecedent[r], 0]
        has_anchor = np.zeros(baskets.n_orders, dtype=bool)
        has_anchor[csc.indices[csc.indptr[anchor_code]:csc.indptr[anchor_code + 1]]] = True
        has_all = np.asarray(csc[:, items].sum(axis=1)).ravel() == len(items)
        seen = g >= 0
        n_anchor = np.bincount(g[seen & has_anchor], minlength=n_groups)
        n_all = np.bincount(g[seen & has_all], minlength=n_groups)
        prior = options.prior_orders
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = (n_all + prior * rules.confidence[r]) / (n_anchor + prior)
        for segment, group in targets:
            if not np.isfinite(rate[group]):  # no prior and no order with the anchor
                continue
            take = float(np.clip(rate[group], *TAKE_RATE_RANGE))
            out.append((segment, b.id, take, options.baseline_share * take,
                        int(n_anchor[group]), int(n_all[group])))
    return (pd.DataFrame(out, columns=columns), tuple(added), tuple(unmatched), unsegmented)
