"""The nightly job end to end at scale (issue 19, part 4): load, re-estimate from logs, solve
within the budget, check, guardrails, store and publish, report.

The catalog is the audiences-and-channels one of benchmarks/README.md ("Audiences and
channels at a million segments": `offeropt generate --contexts 4 --channels`), and the logs
are `offeropt simulate --views-per-cell 2` of it (at a million segments, 27.7M rows). Each
step is its own `offeropt` process, timed whole, with its peak memory from `wait4`:

1. the baseline, in the same run: `offeropt solve CATALOG --time-limit T` alone;
2. `offeropt nightly --exposures LOGS --time-limit T` as a dry run (no store writes);
3. the same with `--publish` on an empty SQLite store (it publishes version 1);
4. again with `--publish`, now against yesterday's plan (stability, guardrails against the
   active plan, the diff).

Figures: each run's wall time against its budget T and against the solve alone, and its
peak memory. Nothing is asserted about time; what must hold on any machine is: every night
ends with exit code 0 (published or a dry run that would publish) or 7 (kept the previous
plan), writes its report, and the report stays aggregated (at most ten segments named in the
diff, whatever the catalog's size).

Smoke size (the test run): 200 segments, a 3 s budget. Full size, alone on the machine
(about an hour): `OFFEROPT_BENCH_SIZE=full python -m pytest benchmarks/test_nightly_scale.py -s`
(OFFEROPT_BENCH_SEGMENTS, OFFEROPT_BENCH_TIME_LIMIT to change the 1,000,000 and 1,200 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.conftest import knob

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = int(knob("OFFEROPT_BENCH_SEGMENTS", "200", "1000000"))
TIME_LIMIT = float(knob("OFFEROPT_BENCH_TIME_LIMIT", "3", "1200"))
KEPT_PREVIOUS = 7


def _run(*args: str) -> tuple[int, float, float, str]:
    """Exit code, wall seconds and peak RSS (GB) of `offeropt ARGS`, and its standard error."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, stdout=sink,
                                stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024**2, err


def test_nightly_end_to_end(tmp_path: Path) -> None:
    catalog, logs = tmp_path / "catalog", tmp_path / "logs.parquet"
    code, *_, err = _run("generate", "--segments", str(SEGMENTS), "--seed", "11", "--contexts",
                         "4", "--channels", "--items", str(min(1000, max(60, SEGMENTS // 20))),
                         "--to", "parquet", "-o", str(catalog))
    assert code == 0, err
    code, *_, err = _run("simulate", str(catalog), "--views-per-cell", "2", "--holdout", "0.05",
                         "--seed", "5", "-o", str(logs))
    assert code == 0, err
    store = f"sqlite:///{tmp_path / 'store.db'}"
    limit = f"{TIME_LIMIT:g}"
    rows: list[tuple[str, int, float, float, dict[str, Any] | None]] = []
    code, wall, peak, err = _run("solve", str(catalog), "--time-limit", limit, "--no-progress",
                                 "-o", str(tmp_path / "alone.json"))
    assert code in (0, 4), err  # 4: no plan within a smoke budget on a loaded machine
    rows.append(("solve alone (baseline)", code, wall, peak, None))
    for name, key, extra in (("nightly, dry run", "dry", ()),
                             ("nightly --publish, empty store", "first", ("--publish",)),
                             ("nightly --publish, over yesterday", "second", ("--publish",))):
        code, wall, peak, err = _run(
            "nightly", "--catalog", str(catalog), "--exposures", str(logs), "--time-limit",
            limit, "--store", store, "--report-dir", str(tmp_path / "reports"), "--run-key",
            key, *extra)
        report = json.loads((tmp_path / "reports" / f"{key}.json").read_text())
        assert code in (0, KEPT_PREVIOUS) or report["outcome"] == "failed", err
        html = (tmp_path / "reports" / f"{key}.html").read_text()
        if "diff" in report:
            assert len(report["diff"]["biggest_movers"]) <= 10
        assert len(html) < 400_000  # aggregated: no row per segment
        rows.append((name, code, wall, peak, report))
    baseline = rows[0][2]
    print(f"\nthe nightly job at {SEGMENTS:,} segments, budget {TIME_LIMIT:g} s each "
          f"(logs: {logs.stat().st_size / 1e6:.0f} MB of Parquet)")
    for name, code, wall, peak, report in rows:
        outcome = "" if report is None else \
            f"{report.get('outcome')}, {report.get('summary', '')[:80]}"
        print(f"  {name:<36} exit {code}  wall {wall:7.1f} s ({wall / TIME_LIMIT:.3f} x budget, "
              f"{wall / baseline:.2f} x the solve alone)  peak {peak:5.2f} GB  {outcome}")
