"""The decomposition's segment step on a Dask cluster: `--backend dask [--scheduler ADDRESS]`.

Segments are split into contiguous partitions. Each worker expands its partitions'
candidates itself and keeps them resident (a `Partition` behind a future). An iteration
ships only the per-variant prices out and only the aggregates back: the adjusted and
plain value and the takes per variant. Whole candidate rows travel only at the end, for
the plan and the recovery MIP's contested segments.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from optimizer.backends import Backend
from optimizer.decomposition.oracle import Evaluation, LocalOracle
from optimizer.decomposition.run import decomposed_solution
from optimizer.errors import OfferOptError
from optimizer.formulation.candidates import Candidates, expand, variant_table
from optimizer.formulation.contacts import Contacts
from optimizer.formulation.coupling import coupling_rows, live_rows
from optimizer.model.instance import Instance
from optimizer.solve.result import Solution, SolveOptions

_COLUMNS = ("segment", "variant", "take_prob", "value")


class Partition:
    """One contiguous range of segments, expanded and held on a worker."""

    def __init__(self, part: Instance, offset: int) -> None:
        self.offset = offset
        self.oracle = LocalOracle(expand(part))

    def limits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, tuple[str, ...]]:
        c = self.oracle.cands
        return c.lo, c.hi, c.showable, len(c), c.warnings

    def evaluate(self, price: np.ndarray, track: bool) -> Evaluation:
        return self.oracle.evaluate(price, track)

    def max_takes(self) -> np.ndarray:
        return self.oracle.max_takes()

    def column_counts(self) -> np.ndarray:
        cands = self.oracle.cands
        return np.bincount(cands.usage_entries()[0], minlength=cands.n_columns)

    def reset_tracking(self) -> None:
        self.oracle.reset_tracking()

    def contested(self) -> np.ndarray:
        out: np.ndarray = self.oracle.contested() + self.offset
        return out

    def load(self, price: np.ndarray, row_weight: np.ndarray) -> np.ndarray:
        return self.oracle.load(price, row_weight)

    def chosen(self, price: np.ndarray, exclude: np.ndarray | None) -> dict[str, np.ndarray]:
        local = None if exclude is None else exclude - self.offset
        return self._rows(self.oracle.chosen(price, local))

    def of_segments(self, segments: np.ndarray) -> dict[str, np.ndarray]:
        return self._rows(self.oracle.of_segments(segments - self.offset))

    def compare(self, price_a: np.ndarray, price_b: np.ndarray, K: sp.csr_matrix
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        segments, loss, shed, usage = self.oracle.compare(price_a, price_b, K)
        return segments + self.offset, loss, shed, usage

    def mixed(self, price_a: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]]
              ) -> dict[str, np.ndarray]:
        n = len(self.oracle.cands.lo)
        local = [(price, mine[(mine >= 0) & (mine < n)])
                 for price, mine in ((p, segments - self.offset) for p, segments in moves)]
        return self._rows(self.oracle.mixed(price_a, local))

    def _rows(self, c: Candidates) -> dict[str, np.ndarray]:
        rows = {name: getattr(c, name) for name in _COLUMNS}
        rows["segment"] = rows["segment"].astype(np.int64) + self.offset
        return rows


def split(instance: Instance, partitions: int) -> list[tuple[Instance, int]]:
    """Contiguous segment ranges of about equal response counts, each a small instance.
    No range cuts through a capped audience (its caps tie its segments): a cut moves up to
    the next place between audiences, so audiences listed apart make fewer partitions."""
    seg_ids = pd.Index(instance.segments["id"])
    r_seg = seg_ids.get_indexer(instance.responses["segment"])
    per_segment = np.bincount(r_seg, minlength=len(seg_ids))
    cuts = np.searchsorted(np.cumsum(per_segment),
                           np.linspace(0, per_segment.sum(), partitions + 1)[1:-1])
    cuts = _between_audiences(Contacts.of(instance).leader(), cuts)
    bounds = np.unique(np.r_[0, cuts, len(seg_ids)])
    order = np.argsort(r_seg, kind="stable")
    starts = np.searchsorted(r_seg[order], bounds)
    out = []
    for k in range(len(bounds) - 1):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        responses = instance.responses.iloc[np.sort(order[starts[k]:starts[k + 1]])]
        out.append((dataclasses.replace(
            instance, segments=instance.segments.iloc[lo:hi].reset_index(drop=True),
            responses=responses.reset_index(drop=True), warnings=()), lo))
    return out


def _between_audiences(leader: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Each cut (a first segment of a range) moved up to the nearest place where no
    audience has segments on both sides."""
    n = len(leader)
    last = np.zeros(n, dtype=np.int64)
    np.maximum.at(last, leader, np.arange(n))  # each audience's last segment, at its first
    reach = np.maximum.accumulate(last[leader])  # the furthest segment tied to those so far
    allowed = np.r_[np.flatnonzero(reach[:-1] < np.arange(1, n)) + 1, n]  # cuts before them
    out: np.ndarray = allowed[np.minimum(np.searchsorted(allowed, cuts), len(allowed) - 1)]
    return out


class DaskOracle:
    """The `Oracle` over partitions resident on a Dask cluster."""

    def __init__(self, client: Any, instance: Instance, partitions: int) -> None:
        self.client = client
        self.variants = variant_table(instance)
        self.n_columns = len(self.variants) + len(instance.channels)
        self.segment_views = instance.segments["views"].to_numpy(dtype=np.float64)
        self.contacts = Contacts.of(instance)
        self.group_names = tuple(str(g) for g in pd.factorize(
            instance.bundles["exclusion_group"], use_na_sentinel=True)[1])
        # Actors: each partition lives on one worker, and its methods run there, on it.
        builds = [client.submit(Partition, client.scatter(piece, direct=True), offset, actor=True,
                                pure=False) for piece, offset in split(instance, partitions)]
        self.parts = [future.result() for future in builds]
        limits = self._all("limits")
        self.lo, self.hi, self.showable = (np.concatenate([x[i] for x in limits]) for i in range(3))
        self.n_candidates = int(sum(x[3] for x in limits))
        self.warnings = tuple(w for x in limits for w in x[4])

    def _all(self, method: str, *args: Any) -> list[Any]:
        """Call `method` on every partition at once; gather the answers in partition order."""
        calls = [getattr(part, method)(*args) for part in self.parts]
        return [call.result() for call in calls]

    def evaluate(self, price: np.ndarray, track: bool = False) -> Evaluation:
        parts: list[Evaluation] = self._all("evaluate", price, track)
        return Evaluation(sum(p.adjusted for p in parts), sum(p.objective for p in parts),
                          np.sum([p.takes for p in parts], axis=0),
                          all(p.meets_caps for p in parts))

    def max_takes(self) -> np.ndarray:
        out: np.ndarray = np.max(self._all("max_takes"), axis=0)
        return out

    def reset_tracking(self) -> None:
        self._all("reset_tracking")

    def contested(self) -> np.ndarray:
        return np.concatenate(self._all("contested"))

    def load(self, price: np.ndarray, row_weight: np.ndarray) -> np.ndarray:
        return np.concatenate(self._all("load", price, row_weight))

    def chosen(self, price: np.ndarray, exclude: np.ndarray | None = None) -> Candidates:
        return self._candidates(self._all("chosen", price, exclude))

    def of_segments(self, segments: np.ndarray) -> Candidates:
        return self._candidates(self._all("of_segments", segments))

    def compare(self, price_a: np.ndarray, price_b: np.ndarray, K: sp.csr_matrix
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        parts = self._all("compare", price_a, price_b, K)
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]), np.sum([p[3] for p in parts], axis=0))

    def used_columns(self) -> np.ndarray:
        """Usage columns some candidate of some partition enters."""
        out: np.ndarray = np.sum(self._all("column_counts"), axis=0) > 0
        return out

    def mixed(self, price_a: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]]) -> Candidates:
        return self._candidates(self._all("mixed", price_a, moves))

    def _candidates(self, parts: list[dict[str, np.ndarray]]) -> Candidates:
        columns = {name: np.concatenate([p[name] for p in parts]) for name in _COLUMNS}
        return Candidates(
            segment=columns["segment"].astype(np.int32), variant=columns["variant"],
            take_prob=columns["take_prob"], value=columns["value"], variants=self.variants,
            segment_views=self.segment_views, lo=self.lo, hi=self.hi, showable=self.showable,
            group_names=self.group_names, warnings=self.warnings, contacts=self.contacts)


def connect(scheduler: str | None) -> Any:
    """A client of the cluster at `scheduler`, or of a new local one (a worker per core)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask is a declared dependency
        raise OfferOptError("--backend dask needs the dask[distributed] package") from exc
    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except OSError as exc:
            raise OfferOptError(f"--scheduler: must be a reachable Dask scheduler, got "
                                f"{scheduler!r} ({exc})") from exc
    cluster = LocalCluster(threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


def solve_on_dask(instance: Instance, options: SolveOptions, backend: Backend,
                  start: float) -> Solution:
    client = connect(options.scheduler)
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        oracle = DaskOracle(client, instance, options.partitions or 2 * workers)
        rows = live_rows(coupling_rows(instance, oracle.variants), oracle.used_columns())
        return decomposed_solution(instance, oracle, rows, oracle.n_candidates, options, backend,
                                   start, time.perf_counter())
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and not options.scheduler:
            cluster.close()
