"""One way from a user's choices to `SolveOptions`, whichever form they came in."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import build_parser
from jobs.nightly.run import NightlySettings
from optimizer.errors import OfferOptError
from optimizer.solve.methods import Method, Solver, Where
from optimizer.solve.result import SolveOptions


def test_the_command_line_the_api_and_the_nightly_job_give_the_same_options() -> None:
    args = build_parser().parse_args(["solve", "x.json", "--method", "decompose", "--gap", "0.01",
                                      "--threads", "2", "--split-traffic"])
    api_options = {"time_limit": 60.0, "method": "decompose", "gap": 0.01, "threads": 2,
                   "split_traffic": True}
    nightly = NightlySettings(catalog="x.json", store_url="sqlite://", report_dir=Path("r"),
                              method="decompose", gap=0.01, threads=2, split_traffic=True)
    made = [SolveOptions.chosen(vars(args), time_limit=9.0),
            SolveOptions.chosen(api_options, time_limit=9.0),
            SolveOptions.chosen(vars(nightly), time_limit=9.0)]
    for options in made:
        assert (options.method, options.gap, options.threads, options.split_traffic) == \
            (Method.DECOMPOSE, 0.01, 2, True)
        assert (options.solver, options.backend, options.time_limit) == \
            (Solver.HIGHS, Where.LOCAL, 9.0)


def test_names_are_checked_where_the_options_are_made() -> None:
    with pytest.raises(OfferOptError, match=r"method: must be one of .*, got 'fastest'"):
        SolveOptions.chosen({"method": "fastest"})
    with pytest.raises(OfferOptError, match="solver: must be one of"):
        SolveOptions.chosen({"solver": "gurobi"})
