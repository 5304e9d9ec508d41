"""What-if and the efficient frontier (issue 17): the instance re-solved, warm-started, across
values of one limit, each point checked; `docs/workbench.md` describes it."""

from optimizer.frontier.frontier import (
    MAX_VALUES,
    MIN_SECONDS_PER_POINT,
    POLICY_LIMITS,
    Frontier,
    FrontierPoint,
    Vary,
    checked_inputs,
    frontier,
    number_text,
)
from optimizer.frontier.plot import frontier_svg

__all__ = ["MAX_VALUES", "MIN_SECONDS_PER_POINT", "POLICY_LIMITS", "Frontier", "FrontierPoint",
           "Vary", "checked_inputs", "frontier", "frontier_svg", "number_text"]
