"""The Dask backend: same plan and objective as the local one, on a real LocalCluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from optimizer.decomposition.oracle import LocalOracle
from optimizer.formulation.candidates import expand
from optimizer.model.generate import generate
from optimizer.model.instance import Instance
from optimizer.plan.check import check_plan
from optimizer.solve.dispatch import SolveOptions, solve
from optimizer.solve.reports import DecompositionStats
from tests.plans import plan_document

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def instance() -> Instance:
    return generate(300, seed=4, responses_per_segment=8)


def test_partitions_answer_every_price_as_the_local_oracle(cluster: Any, instance: Instance) -> None:
    from optimizer.decomposition.distributed import DaskOracle

    local = LocalOracle(expand(instance))
    with distributed.Client(cluster) as client:
        remote = DaskOracle(client, instance, partitions=5)
        assert remote.n_candidates == len(local.cands)
        np.testing.assert_allclose(remote.max_takes(), local.max_takes())
        rng = np.random.default_rng(0)
        for _ in range(5):
            price = rng.uniform(0, 50, local.n_columns)
            a, b = local.evaluate(price), remote.evaluate(price)
            assert a.adjusted == pytest.approx(b.adjusted, rel=1e-12)
            assert a.objective == pytest.approx(b.objective, rel=1e-12)
            np.testing.assert_allclose(a.takes, b.takes, rtol=1e-12, atol=1e-9)
            chosen_local, chosen_remote = local.chosen(price), remote.chosen(price)
            assert sorted(zip(chosen_local.segment, chosen_local.variant, strict=True)) == \
                sorted(zip(chosen_remote.segment, chosen_remote.variant, strict=True))


def test_dask_backend_equals_the_local_backend(cluster: Any, instance: Instance) -> None:
    # The multiplier search gets half the time limit; its own iteration cap ends it in under a
    # minute even on a loaded machine, so the clock never cuts the slower Dask run short (which
    # would leave it with other multipliers and possibly another plan). The limit only bounds
    # a pathological recovery MIP. At a 1% gap the plan is the greedy repair's, which keeps
    # the recovery MIP (10 s here, 15 s more on Dask) out of a test about the search.
    options = SolveOptions(method="decompose", time_limit=300, gap=1e-2)
    here = solve(instance, options)
    there = solve(instance, SolveOptions(method="decompose", time_limit=300, gap=1e-2,
                                         backend="dask", scheduler=cluster.scheduler_address,
                                         partitions=3))
    assert isinstance(here.stats, DecompositionStats) and isinstance(there.stats, DecompositionStats)
    assert here.stats.iterations == there.stats.iterations, "the clock stopped a search"
    assert here.objective is not None and there.objective is not None
    assert there.objective == pytest.approx(here.objective, rel=1e-9)
    assert there.bound == pytest.approx(here.bound, rel=1e-9)
    ours, theirs = plan_document(here), plan_document(there)
    key = [(o["segment"], o["bundle"], o["discount"], o["perk"]) for o in ours["offers"]]
    assert key == [(o["segment"], o["bundle"], o["discount"], o["perk"]) for o in theirs["offers"]]
    report = check_plan(instance, theirs)
    assert report.ok, report.violations


def test_exact_method_is_refused_on_dask(instance: Instance) -> None:
    from optimizer.errors import OfferOptError

    with pytest.raises(OfferOptError, match="--backend dask: must be used with --method"):
        solve(instance, SolveOptions(method="exact", backend="dask"))
