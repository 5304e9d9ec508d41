"""Frequent itemsets: Eclat over sparse tid-lists, one level of itemset size at a time.

Each frequent itemset of size k keeps its tid-list (the orders holding it) as a column of a
sparse matrix `Y` (orders x itemsets). One sparse product `Y.T @ X`, X the order x item
matrix, counts every extension `P + {j}` of every frequent k-itemset `P` at once; the
frequent ones with `j` after `P`'s last item are the frequent (k+1)-itemsets, each found
exactly once (every frequent itemset is its largest item added to a frequent prefix). A
child needs its own tid-list only if a later sibling exists (an itemset extends only by items
its prefix extends by). Items are numbered rarest first, so a child's tid-list is its rarer
prefix's, filtered by one item column: the work is in C (scipy's sparse product, numpy
gathers), with Python loops over levels, chunks and items, never over orders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from optimizer.errors import InputError, Issue

MAX_ITEMSETS = 500_000  # frequent itemsets mined at most; more is refused, naming --min-support
_CHUNK_CELLS = 8_000_000  # (prefixes x items) counted per sparse product: bounds its memory


@dataclass(frozen=True, eq=False)
class Itemsets:
    """Frequent itemsets: `items` holds each one's item codes ascending, padded with -1."""

    items: np.ndarray  # (n, max_size) int32
    size: np.ndarray  # (n,) int64: items per itemset
    orders: np.ndarray  # (n,) int64: orders holding the itemset
    n_orders: int

    def __len__(self) -> int:
        return len(self.orders)

    @property
    def support(self) -> np.ndarray:
        return self.orders / float(self.n_orders)


def min_count(min_support: float, n_orders: int) -> int:
    """The fewest orders an itemset needs: the least c with c / n_orders >= min_support,
    compared in floating point exactly as the support itself is."""
    c = max(1, math.ceil(min_support * n_orders))
    while c > 1 and (c - 1) / float(n_orders) >= min_support:
        c -= 1
    while c / float(n_orders) < min_support:
        c += 1
    return c


def mine_itemsets(matrix: sp.csr_matrix, min_orders: int, max_size: int,
                  max_itemsets: int = MAX_ITEMSETS) -> Itemsets:
    """Every itemset of at most `max_size` items held by at least `min_orders` orders.

    `matrix` is orders x items with a 1 where an order holds an item (no duplicates)."""
    n_orders, _ = matrix.shape
    counts = np.asarray(matrix.sum(axis=0)).ravel().astype(np.int64)
    frequent = np.flatnonzero(counts >= min_orders)
    # rarest first (ties by code): a child's tid-list is then filtered from its rarer prefix
    frequent = frequent[np.lexsort((frequent, counts[frequent]))]
    n_freq = len(frequent)
    _check_cap(n_freq, max_itemsets, 1)
    x_csc = sp.csc_matrix(matrix[:, frequent], dtype=np.int32)
    x_csc.sort_indices()
    x_csr = x_csc.tocsr()

    found_items: list[np.ndarray] = [np.arange(n_freq, dtype=np.int32)[:, None]]
    found_counts: list[np.ndarray] = [counts[frequent]]
    total = n_freq
    prefix, tids = found_items[0], x_csc  # level 1: every item may be extended
    for size in range(2, max_size + 1):
        if prefix.shape[0] == 0:
            break
        parent, item, count = _extensions(tids, x_csr, prefix[:, -1], min_orders, n_freq)
        total += len(count)
        _check_cap(total, max_itemsets, size)
        if len(count) == 0:
            break
        children = np.hstack([prefix[parent], item[:, None].astype(np.int32)])
        found_items.append(children)
        found_counts.append(count)
        if size == max_size:
            break
        # only a child with a later sibling (same parent) can be extended
        extendable = np.zeros(len(parent), dtype=bool)
        extendable[:-1] = parent[1:] == parent[:-1]
        prefix = children[extendable]
        tids = _child_tids(tids, x_csc, parent[extendable], item[extendable])

    return _assemble(found_items, found_counts, frequent, max_size, n_orders)


def _check_cap(total: int, max_itemsets: int, size: int) -> None:
    if total > max_itemsets:
        raise InputError([Issue(
            "--min-support", f"must leave at most {max_itemsets:,} frequent itemsets (the most "
            "offeropt mines; raise --min-support or lower --max-size)",
            value_text=f"more than {max_itemsets:,} by size {size}")])


def _extensions(tids: sp.csc_matrix, x_csr: sp.csr_matrix, last: np.ndarray, min_orders: int,
                n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(parent, item, count) of every frequent extension by a later item, ordered by parent
    then item; counted by `tids.T @ X` in chunks of parents."""
    parents, items, counts = [], [], []
    step = max(1, _CHUNK_CELLS // max(n_items, 1))
    for start in range(0, tids.shape[1], step):
        block = tids[:, start:start + step]
        product = (block.T.tocsr() @ x_csr).tocsr()
        product.sort_indices()
        row = np.repeat(np.arange(product.shape[0]), np.diff(product.indptr))
        col, data = product.indices, product.data
        keep = (data >= min_orders) & (col > last[start + row])
        parents.append(row[keep] + start)
        items.append(col[keep])
        counts.append(data[keep].astype(np.int64))
    if not parents:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return (np.concatenate(parents).astype(np.int64), np.concatenate(items).astype(np.int64),
            np.concatenate(counts))


def _child_tids(tids: sp.csc_matrix, x_csc: sp.csc_matrix, parent: np.ndarray,
                item: np.ndarray) -> sp.csc_matrix:
    """The tid-list of each child `parent + {item}`: the parent's orders that hold the item.

    Children are taken item by item: the item's orders are marked in one boolean buffer over
    all orders, the parents' orders looked up in it (a gather), and the marks cleared."""
    n_orders = tids.shape[0]
    if len(item) == 0:
        return sp.csc_matrix((n_orders, 0), dtype=np.int32)
    by_item = np.argsort(item, kind="stable")
    sub = tids[:, parent[by_item]]  # the parents' tid-lists, children grouped by item
    sub.sort_indices()
    keep = np.zeros(sub.nnz, dtype=bool)
    mark = np.zeros(n_orders, dtype=bool)
    sorted_items = item[by_item]
    bounds = np.flatnonzero(np.diff(sorted_items)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(sorted_items)]])
    for lo, hi in zip(starts, ends, strict=True):
        j = int(sorted_items[lo])
        rows = x_csc.indices[x_csc.indptr[j]:x_csc.indptr[j + 1]]
        mark[rows] = True
        a, b = sub.indptr[lo], sub.indptr[hi]
        keep[a:b] = mark[sub.indices[a:b]]
        mark[rows] = False
    column = np.repeat(np.arange(sub.shape[1]), np.diff(sub.indptr))[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(column, minlength=sub.shape[1]))])
    grouped = sp.csc_matrix((np.ones(len(column), dtype=np.int32), sub.indices[keep], indptr),
                            shape=(n_orders, sub.shape[1]))
    back = np.empty_like(by_item)
    back[by_item] = np.arange(len(by_item))
    return grouped[:, back]  # in the children's own order again


def _assemble(found_items: list[np.ndarray], found_counts: list[np.ndarray],
              frequent: np.ndarray, max_size: int, n_orders: int) -> Itemsets:
    """Back to the caller's item codes, each itemset's codes ascending, padded with -1."""
    width = max(1, max_size)
    blocks, sizes = [], []
    for level in found_items:
        codes = np.sort(frequent[level], axis=1).astype(np.int32)
        padded = np.full((len(codes), width), -1, dtype=np.int32)
        padded[:, :codes.shape[1]] = codes
        blocks.append(padded)
        sizes.append(np.full(len(codes), codes.shape[1], dtype=np.int64))
    return Itemsets(items=np.vstack(blocks), size=np.concatenate(sizes),
                    orders=np.concatenate(found_counts), n_orders=n_orders)
