"""Shared fixtures, and a summary that reports every figure as a ratio to its baseline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from optimizer.io import load_instance
from optimizer.model import Instance

ROOT = Path(__file__).resolve().parent.parent
MEDIANS: dict[tuple[str, str], float] = {}  # (case, "ours" | "baseline") -> seconds


@pytest.fixture(scope="session")
def instances() -> dict[str, Instance]:
    return {name: load_instance(ROOT / "instances" / f"{name}.json") for name in ("small", "medium")}


def record(benchmark: Any, case: str, variant: str) -> None:
    MEDIANS[(case, variant)] = float(benchmark.stats.stats.median)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    cases = sorted({case for case, _ in MEDIANS})
    if not cases:
        return
    tr = terminalreporter
    tr.section(f"offeropt vs baseline, same run ({os.cpu_count()} cores)")
    tr.write_line(f"{'case':<28}{'ours (s)':>12}{'baseline (s)':>14}{'speed-up':>10}")
    for case in cases:
        ours, base = MEDIANS.get((case, "ours")), MEDIANS.get((case, "baseline"))
        if ours is None or base is None:
            continue
        tr.write_line(f"{case:<28}{ours:>12.4f}{base:>14.4f}{base / ours:>9.1f}x")
