"""The size switch, shared fixtures, and a summary that reports every figure as a ratio to its
baseline measured in the same run.

`OFFEROPT_BENCH_SIZE` is the one switch every module reads for its instance sizes, time
limits, rounds and load durations:

- `smoke` (the default, so the plain test run executes it): every code path of every
  benchmark (build the instance, run ours and the baseline, compute the ratio, keep the
  benchmark's own checks) in seconds per module. pytest-benchmark's timing is off, so
  each body runs once; the figures printed are single runs on toy sizes, not measurements.
- `full` (`make bench` sets it): the sizes benchmarks/README.md records.

No benchmark asserts a time or a speed-up: figures are printed, never checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from optimizer.io import instance_from_document, load_instance
from optimizer.io.json_form import instance_to_document
from optimizer.model.generate import generate
from optimizer.model.instance import Instance

ROOT = Path(__file__).resolve().parent.parent
SIZE_VARIABLE = "OFFEROPT_BENCH_SIZE"
SIZES = ("smoke", "full")
SIZE = os.environ.get(SIZE_VARIABLE, "smoke")
FULL = SIZE == "full"
SMOKE_INSTANCE = "smoke"  # generated: 10 segments, every row family, solves in about a second
MEDIANS: dict[tuple[str, str], float] = {}  # (case, "ours" | "baseline") -> seconds

T = TypeVar("T")


def sized(smoke: T, full: T) -> T:
    """The value for the size this run was started with."""
    return full if FULL else smoke


def knob(name: str, smoke: str, full: str) -> str:
    """A full-size setting an environment variable may override (OFFEROPT_BENCH_SEGMENTS,
    OFFEROPT_BENCH_TIME_LIMIT); smoke size ignores the override, so the test run stays short."""
    return os.environ.get(name, full) if FULL else smoke


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options (its hook runs last)
def pytest_configure(config: pytest.Config) -> None:
    if SIZE not in SIZES:
        raise pytest.UsageError(f"{SIZE_VARIABLE}: must be one of {', '.join(SIZES)}, got {SIZE!r}")
    option = config.option
    if not FULL and hasattr(option, "benchmark_disable") and not option.benchmark_enable \
            and not option.benchmark_only:
        option.benchmark_disable = True  # each body runs once; `measure` times it


class Instances(dict[str, Instance]):
    """The shipped instances by name (`instances/NAME.json`), loaded when first asked for, and
    the smoke instance: generated, then read back from its document, so that its tables have
    the types of a loaded catalog (missing text is <NA>, not None), as the shipped ones do."""

    def __missing__(self, name: str) -> Instance:
        if name == SMOKE_INSTANCE:
            doc = instance_to_document(generate(10, seed=8, name=SMOKE_INSTANCE))
            inst = instance_from_document(doc, origin=SMOKE_INSTANCE)
        else:
            inst = load_instance(ROOT / "instances" / f"{name}.json")
        self[name] = inst
        return inst


@pytest.fixture(scope="session")
def instances() -> Instances:
    return Instances()


def measure(benchmark: Any, case: str, variant: str, target: Callable[..., T], *args: Any,
            rounds: int = 1, warmup_rounds: int = 0) -> T:
    """`benchmark.pedantic` with the full size's rounds (one round, no warm-up at smoke size);
    its median goes to the summary as `variant` ("ours" or "baseline") of `case`."""
    started = time.perf_counter()
    result: T = benchmark.pedantic(target, args=args, rounds=sized(1, rounds),
                                   warmup_rounds=sized(0, warmup_rounds))
    seconds = time.perf_counter() - started
    stats = benchmark.stats  # None when pytest-benchmark's timing is off: the one run's time
    MEDIANS[(case, variant)] = seconds if stats is None else float(stats.stats.median)
    return result


def pytest_terminal_summary(terminalreporter: Any) -> None:
    cases = sorted({case for case, _ in MEDIANS})
    if not cases:
        return
    tr = terminalreporter
    note = "" if FULL else f"; {SIZE_VARIABLE}=smoke: single runs on toy sizes, not figures"
    tr.section(f"offeropt vs baseline, same run ({os.cpu_count()} cores{note})")
    tr.write_line(f"{'case':<28}{'ours (s)':>12}{'baseline (s)':>14}{'speed-up':>10}")
    for case in cases:
        ours, base = MEDIANS.get((case, "ours")), MEDIANS.get((case, "baseline"))
        if ours is None or base is None:
            continue
        tr.write_line(f"{case:<28}{ours:>12.4f}{base:>14.4f}{base / ours:>9.1f}x")
