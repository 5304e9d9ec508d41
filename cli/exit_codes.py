"""One set of exit codes for every `offeropt` command."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # for `nightly`: published (a dry run: every guardrail passed)
    INPUT_ERROR = 1
    USAGE = 2
    INFEASIBLE = 3
    NO_PLAN_IN_TIME = 4
    ERROR = 5  # the solver, the store, or a nightly run key held by a live job
    CHECK_FAILED = 6
    KEPT_PREVIOUS = 7  # `nightly`: a guardrail failed and the active plan stays
    INTERRUPTED = 130
