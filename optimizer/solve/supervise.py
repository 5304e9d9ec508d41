"""Run a solve in a child process, stop it at the deadline, keep the best plan so far.

HiGHS can overrun its own time limit by minutes inside a root LP, where no callback runs,
so a time limit that must hold cannot rest on the solver's good will. The solve runs in a
forked child (which shares the parent's instance and candidates copy-on-write); the child
sends every improved plan and every progress snapshot through a pipe as it goes; the
parent waits until the child finishes or the deadline passes, then kills it if need be.
What the parent holds then is the best plan the child found, whatever the solver was doing.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from optimizer.backends import Progress
from optimizer.errors import OfferOptError
from optimizer.formulation.candidates import Candidates
from optimizer.formulation.offer_sets import OfferSets
from optimizer.solve.reports import PricedRow

_PR_SET_PDEATHSIG = 1
TICK_SECONDS = 1.0  # the caller's progress callback is called at least this often


@dataclass(frozen=True)
class PlanMessage:
    """An improved plan: its candidate rows (segment, variant, take probability, value)."""

    segment: np.ndarray
    variant: np.ndarray
    take_prob: np.ndarray
    value: np.ndarray
    how: str
    sets: OfferSets | None = None
    # what the solve ranks plans by, when not their value: under a change penalty, the value
    # less the penalty for yesterday's offers changed
    score: float | None = None
    multipliers: list[PricedRow] | None = None  # those the plan was found at, if any

    @classmethod
    def of(cls, cands: Candidates, selected: np.ndarray, sets: OfferSets | None,
           how: str) -> PlanMessage:
        """The plan of the candidates `selected` (bool), whose sets (if any) name positions in
        `cands`: only the plan's rows travel."""
        pick = np.flatnonzero(selected)
        if sets is not None:
            sets = dataclasses.replace(sets, member=np.searchsorted(pick, sets.member))
        return cls(cands.segment[pick], cands.variant[pick], cands.take_prob[pick],
                   cands.value[pick], how, sets)

    @property
    def objective(self) -> float:
        if self.sets is None:
            return float(self.value.sum())
        return float(self.sets.shares(len(self.value)) @ self.value)

    @property
    def rank(self) -> float:
        return self.objective if self.score is None else self.score


def best_first(plans: list[PlanMessage]) -> list[PlanMessage]:
    return sorted(plans, key=lambda p: -p.rank)


class OnPlan(Protocol):
    """Called with each improved plan (true values) as a solve finds it."""

    def __call__(self, plan: Candidates, how: str, score: float | None = None,
                 multipliers: list[PricedRow] | None = None) -> None: ...


class Sink(Protocol):
    """Where a solve sends each improved plan and each progress snapshot."""

    def plan(self, message: PlanMessage) -> None: ...

    def progress(self, snapshot: Progress) -> bool: ...


class Collector:
    """A sink in this process: keeps the plans, passes progress on (True stops the solve)."""

    def __init__(self, progress: Callable[[Progress], bool] | None) -> None:
        self.plans: list[PlanMessage] = []
        self.found_at: list[float] = []  # perf_counter when each plan came
        self._progress = progress

    def plan(self, message: PlanMessage) -> None:
        self.plans.append(message)
        self.found_at.append(time.perf_counter())

    def progress(self, snapshot: Progress) -> bool:
        return self._progress is not None and bool(self._progress(snapshot))


class Channel:
    """The child's end: plans and progress go to the parent as they happen."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def plan(self, message: PlanMessage) -> None:
        self.conn.send(("plan", (message, time.perf_counter())))  # one clock across the fork

    def progress(self, snapshot: Progress) -> bool:
        self.conn.send(("progress", snapshot))
        return False  # the parent stops the child itself


@dataclass
class Supervised:
    plans: list[PlanMessage] = field(default_factory=list)  # in the order found
    found_at: list[float] = field(default_factory=list)  # perf_counter when each plan came
    result: Any = None  # what the work returned; None when it was stopped
    stopped: str | None = None  # "deadline" or "cancelled" when the child was killed
    last_progress: Progress | None = None

    def best_first(self) -> list[PlanMessage]:
        return best_first(self.plans)


def supervise(work: Callable[[Channel], Any], deadline: float | None,
              progress: Callable[[Progress], bool] | None = None) -> Supervised:
    """Run `work(channel)` in a forked child until it returns or `deadline` (perf_counter)."""
    sys.stdout.flush()  # what the parent buffered must not be written twice
    sys.stderr.flush()
    context = mp.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(work, send, os.getpid()), daemon=True)
    child.start()
    send.close()
    out = Supervised()
    try:
        out.stopped = _collect(receive, child, deadline, progress, out)
    finally:
        if child.is_alive():
            os.kill(child.pid or 0, signal.SIGKILL)  # HiGHS's threads go with it
        child.join()
        receive.close()
    return out


def _collect(receive: Connection, child: Any, deadline: float | None,
             progress: Callable[[Progress], bool] | None, out: Supervised) -> str | None:
    began = time.perf_counter()
    told = began  # when `progress` was last called
    while True:
        now = time.perf_counter()
        if progress is not None and now - told >= TICK_SECONDS:
            # The solver may be where no callback runs (a long LP, CBC, a step without
            # progress reports): the caller still hears from the solve every TICK_SECONDS,
            # with the last snapshot, and can stop it (a cancelled API run) at once.
            told = now
            if progress(_tick(out.last_progress, now - began)):
                _drain_plans(receive, out)
                return "cancelled"
        wait = TICK_SECONDS / 2 if deadline is None else \
            min(TICK_SECONDS / 2, deadline - time.perf_counter())
        if wait <= 0:
            _drain_plans(receive, out)
            return "deadline"
        if not receive.poll(wait):
            if not child.is_alive() and not receive.poll(0):
                raise OfferOptError(f"the solve process ended without a result "
                                    f"(exit code {child.exitcode})")
            continue
        try:
            kind, payload = receive.recv()
        except EOFError as exc:
            raise OfferOptError(f"the solve process ended without a result "
                                f"(exit code {child.exitcode})") from exc
        if kind == "plan":
            _keep_plan(out, payload)
        elif kind == "progress":
            out.last_progress = payload
            if progress is not None:
                told = time.perf_counter()
                if progress(_tick(payload, told - began)):
                    _drain_plans(receive, out)
                    return "cancelled"
        elif kind == "result":
            out.result = payload
            return None
        else:  # "error": re-raised here, as the caller would have seen it
            raise payload


def _tick(last: Progress | None, elapsed: float) -> Progress:
    """The snapshot the caller is told: the solver's last one (or nothing known yet), its
    `elapsed` on the supervisor's clock (the solver's own restarts with each sub-solve)."""
    if last is None:
        return Progress(None, None, None, elapsed)
    return dataclasses.replace(last, elapsed=max(last.elapsed, elapsed))


def _drain_plans(receive: Connection, out: Supervised) -> None:
    """Plans and progress already sent when the parent decides to stop the child still count."""
    while receive.poll(0):
        try:
            kind, payload = receive.recv()
        except EOFError:
            return
        if kind == "plan":
            _keep_plan(out, payload)
        elif kind == "progress":  # its bound may prove the last plan
            out.last_progress = payload


def _keep_plan(out: Supervised, sent: tuple[PlanMessage, float]) -> None:
    message, found_at = sent
    out.plans.append(message)
    out.found_at.append(found_at)


def _die_with_parent(parent: int) -> None:
    """The kernel kills this child when its parent dies, `kill -9` included (Linux's
    PR_SET_PDEATHSIG), so no solve outlives the process that asked for it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's kill at its deadline remains
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _child(work: Callable[[Channel], Any], send: Connection, parent: int) -> None:
    _die_with_parent(parent)
    channel = Channel(send)
    try:
        result = work(channel)
        send.send(("result", result))
    except BaseException as exc:
        try:
            send.send(("error", exc if isinstance(exc, OfferOptError) else
                       OfferOptError(f"the solve failed: {exc!r}\n{traceback.format_exc()}")))
        except Exception:  # an error that does not pickle travels as its text
            send.send(("error", OfferOptError(f"the solve failed: {exc}")))
    finally:
        send.close()
