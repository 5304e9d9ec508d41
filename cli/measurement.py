"""`offeropt measure`: what a plan realized in the served logs, and what another plan would
have earned on the same views (docs/measurement.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.args import positive_int
from cli.exit_codes import ExitCode
from optimizer.errors import file_error


def register(sub: Any) -> None:
    """measure."""
    m = sub.add_parser("measure", help="what a plan realized in the served logs: take and attach "
                       "rates, incremental margin against the holdout, AOV increment, ROI")
    m.add_argument("logs", help="exposures@1 logs (CSV or Parquet) with plan_version, set and "
                   "propensity columns, as `offeropt logs export` writes them")
    m.add_argument("--instance", required=True, help="the catalog the plan was solved for")
    m.add_argument("--plan", required=True, help="the plan served (an offeropt/plan@1 JSON file)")
    m.add_argument("--version", type=positive_int, metavar="V",
                   help="measure the rows of this plan version (required when the logs hold several)")
    m.add_argument("--against", metavar="OTHER_PLAN",
                   help="also estimate this plan's value from the same logs (off-policy)")
    m.add_argument("--group-by", choices=("audience", "channel", "timing", "segment"),
                   help="segment groups (default: audience, else channel, else timing, else segment)")
    m.add_argument("--json", action="store_true", help="print the measurement as JSON")
    m.add_argument("--html", metavar="FILE", help="write the report as a self-contained HTML page")
    m.set_defaults(run=_measure)


def _plan(path: str) -> Any:
    from optimizer.io import load_plan
    from optimizer.plan.model import Plan

    return Plan.from_dict(load_plan(path))


def _measure(args: argparse.Namespace) -> int:
    from optimizer.io import load_instance
    from optimizer.io.tables import read_table_file
    from optimizer.measure import measure, measurement_html, off_policy, summary

    instance = load_instance(args.instance)
    plan = _plan(args.plan)
    other = _plan(args.against) if args.against else None
    frame, locator = read_table_file(args.logs)
    name = Path(args.logs).name
    m = measure(frame, instance, plan, args.version, group_by=args.group_by, locator=locator,
                name=name)
    estimate = None if other is None else off_policy(
        frame, instance, other, locator=locator, name=name, label=f"plan {Path(args.against).name}")
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(measurement_html(m, estimate), encoding="utf-8")
        except OSError as exc:
            raise file_error(path, exc, "must be a writable file") from exc
    if args.json:
        doc = m.to_dict()
        if estimate is not None:
            doc["off_policy"] = estimate.to_dict()
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        print(summary(m, estimate))
    return ExitCode.OK
