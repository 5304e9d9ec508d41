"""Audiences and channels at scale (spec section 8): the decomposition on a catalog whose
segments are audiences of 4 contexts with frequency and repeat caps on every audience and
3 channels with contact costs and binding capacities, against the same catalog without them.

Each solve is its own `offeropt` process (generated straight to Parquet), so wall time and
peak RSS are the process's own. At OFFEROPT_BENCH_SIZE=full the size comes from
OFFEROPT_BENCH_CONTACT_SEGMENTS (default 1000000, the target of 250,000 audiences) and the
limit from OFFEROPT_BENCH_TIME_LIMIT (default 600 s); at smoke size (the test run) 200
segments with a 10 s limit. The ratios are against the catalog without section 8.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.conftest import knob
from benchmarks.test_scale import _percent, _run

SEGMENTS = int(knob("OFFEROPT_BENCH_CONTACT_SEGMENTS", "200", "1000000"))
TIME_LIMIT = knob("OFFEROPT_BENCH_TIME_LIMIT", "10", "600")  # 3 s left no plan on a loaded CI


def test_audiences_and_channels_against_none(tmp_path: Path) -> None:
    rows = []
    for name, extra in (("without", []), ("audiences", ["--contexts", "4", "--channels"])):
        folder, plan = tmp_path / name, tmp_path / f"{name}.json"
        _run(["generate", "--segments", str(SEGMENTS), "--seed", "11", "--items", "1000",
              *extra, "--to", "parquet", "-o", str(folder)])
        seconds, gb = _run(["solve", str(folder), "--method", "decompose", "--time-limit",
                            TIME_LIMIT, "--no-progress", "-o", str(plan)])
        doc = json.loads(plan.read_text())
        assert doc["status"] in ("optimal", "feasible"), doc["status"]
        assert doc["solver"]["check"] == "passed"
        rows.append((name, seconds, gb, doc["gap"], doc["objective"]))
    base = rows[0]
    print(f"\n{SEGMENTS:,} segments, decompose, limit {TIME_LIMIT} s")
    print(f"{'catalog':>10} {'wall s':>8} {'ratio':>6} {'peak GB':>8} {'ratio':>6} {'gap':>9}")
    for name, seconds, gb, gap, _ in rows:
        print(f"{name:>10} {seconds:>8.1f} {seconds / base[1]:>6.2f} {gb:>8.2f} "
              f"{gb / base[2]:>6.2f} {_percent(gap):>9}")
