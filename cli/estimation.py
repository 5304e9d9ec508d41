"""`offeropt` commands for the inputs: estimate, simulate, evaluate, segment."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from cli.args import fraction, non_negative_int, open_fraction
from cli.exit_codes import ExitCode
from cli.solving import load
from optimizer.errors import InputError, Issue


def register(sub: Any) -> None:
    """estimate, simulate, evaluate, segment."""
    e = sub.add_parser("estimate", help="estimate responses from experiment logs (exposures@1)")
    e.add_argument("exposures", help="CSV or Parquet log, aggregated or one row per view")
    e.add_argument("--instance", required=True, help="the catalog the logs are about")
    e.add_argument("-o", "--output", help="responses with uncertainty, .csv or .parquet "
                   "(default: CSV on standard output)")
    e.add_argument("--write-instance", metavar="NEW", help="the instance with the estimated "
                   "responses and perk lifts (.json or a folder)")
    e.add_argument("--perk-lifts", metavar="FILE", help="perk lift estimates, .csv or .parquet")
    e.add_argument("--method", choices=("pooled", "naive"), default="pooled",
                   help="partial pooling (default) or per-cell maximum likelihood")
    e.add_argument("--conservative", type=open_fraction, metavar="Q",
                   help="write each cell's Q-quantile of incremental value, not the mean")
    e.set_defaults(run=_estimate)

    s = sub.add_parser("simulate", help="draw experiment logs from an instance taken as the truth")
    s.add_argument("instance")
    s.add_argument("--views-per-cell", type=non_negative_int, required=True, metavar="N")
    s.add_argument("--holdout", type=fraction, default=0.1, metavar="F",
                   help="expected share of views in the holdout (default 0.1)")
    s.add_argument("--seed", type=int, default=0, metavar="K")
    s.add_argument("--row-level", action="store_true", help="one row per view")
    s.add_argument("-o", "--output", help=".csv or .parquet (default: CSV on standard output)")
    s.set_defaults(run=_simulate)

    v = sub.add_parser("evaluate", help="what a plan realizes under a ground-truth instance")
    v.add_argument("plan", help="an offeropt/plan@1 JSON file")
    v.add_argument("--truth", required=True, help="the instance taken as the truth")
    v.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    v.set_defaults(run=_evaluate)

    g = sub.add_parser("segment", help="RFM segments of a transaction log")
    g.add_argument("transactions", help="CSV or Parquet, one row per purchase")
    g.add_argument("--asof", help="scoring date (default: the day after the last purchase)")
    g.add_argument("-o", "--output", help="segment ids and sizes, .csv or .parquet "
                   "(default: CSV on standard output)")
    g.add_argument("--assignments", metavar="FILE", help="per-customer scores and segment")
    g.add_argument("--customer-column", default="customer_id")
    g.add_argument("--date-column", default="date")
    g.add_argument("--amount-column", default="amount")
    g.add_argument("--date-format", help="strftime format of the dates, e.g. %%Y%%m%%d")
    g.add_argument("--recency-days", type=_numbers, default=(30, 60, 90, 180), metavar="A,B,C,D")
    g.add_argument("--frequency", type=_numbers, default=(10, 7, 5, 3), metavar="A,B,C,D")
    g.add_argument("--monetary", type=_numbers, default=(100_000, 70_000, 50_000, 30_000),
                   metavar="A,B,C,D")
    g.set_defaults(run=_segment)


def _estimate(args: argparse.Namespace) -> int:
    from optimizer.estimation.estimate import estimate
    from optimizer.estimation.exposures import load_exposures
    from optimizer.io import write_instance

    inst = load(args.instance)
    est = estimate(inst, load_exposures(args.exposures, inst), args.method, args.conservative)
    _emit(est.responses, args.output)
    if args.perk_lifts:
        _emit(est.perks, args.perk_lifts)
    if args.write_instance:
        write_instance(est.to_instance(inst), args.write_instance)
    r = est.responses
    data = int((r["take_source"] == "data").sum())
    kept = int((r["take_source"] == "instance").sum())
    print(f"{len(r)} responses ({args.method}): {data} estimated from their own data, "
          f"{len(r) - data - kept} from pooled estimates, {kept} kept from the instance; "
          f"{int((est.perks['source'] == 'data').sum())} perk lifts from data", file=sys.stderr)
    if args.method == "pooled":
        print("pooling: between-cell sd " + ", ".join(
            f"{k} {v:.3g}" if v == v else f"{k} n/a (no data)" for k, v in est.pooling.items()),
            file=sys.stderr)
    for warning in est.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return ExitCode.OK


def _simulate(args: argparse.Namespace) -> int:
    from optimizer.estimation.simulate import simulate

    logs = simulate(load(args.instance), args.views_per_cell, args.holdout, args.seed, args.row_level)
    _emit(logs, args.output)
    views = int(logs["views"].sum()) if "views" in logs else len(logs)  # row-level: a row per view
    print(f"{len(logs)} log rows, {views} views", file=sys.stderr)
    return ExitCode.OK


def _evaluate(args: argparse.Namespace) -> int:
    from optimizer.io import load_plan
    from optimizer.plan.check import evaluate_plan

    truth = load(args.truth)
    plan = load_plan(args.plan)
    report = evaluate_plan(truth, plan)
    if report.malformed:
        raise InputError(report.malformed)
    if args.json:
        print(json.dumps({"truth": truth.name, "expected_incremental_margin": report.objective,
                          "kpis": report.kpis, "violations": list(report.violations)}, indent=2))
        return ExitCode.OK
    k = report.kpis
    claimed = plan.get("objective")  # the plan's own claim, of any JSON type
    print(f"under {truth.name}: expected incremental margin {report.objective or 0:,.2f}"
          + (f" (the plan claimed {claimed:,.2f})" if isinstance(claimed, int | float) else ""))
    for name in ("expected_takes", "expected_offer_revenue", "take_rate", "discounted_share",
                 "avg_discount", "promotion_spend", "aggregate_margin_rate"):
        print(f"  {name:24} {k.get(name, 0):,.4f}")
    if "contact_cost" in k:  # spec section 8
        roi = "n/a (no spend)" if k["roi"] is None else f"{k['roi']:,.4f}"
        print(f"  {'contact_cost':24} {k['contact_cost']:,.4f}\n  {'roi':24} {roi}")
        for channel, use in k["channels"].items():
            cap = "no capacity" if use["capacity"] is None else f"of {use['capacity']:,.0f}"
            print(f"  channel {channel:16} {use['impressions']:,.0f} impressions {cap}")
    tight = sorted(k.get("inventory", {}).items(),
                   key=lambda kv: -kv[1]["used"] / max(kv[1]["stock"], 1e-12))[:5]
    for item, use in tight:
        print(f"  inventory {item:14} {use['used']:,.1f} of {use['stock']:,.0f}")
    print(f"{len(report.violations)} rules broken under the truth"
          + "".join(f"\n  {v}" for v in report.violations[:20]))
    return ExitCode.OK


def _segment(args: argparse.Namespace) -> int:
    from optimizer.estimation.rfm import Columns, Thresholds, read_transactions, score, segment_sizes

    thresholds = Thresholds(args.recency_days, args.frequency, args.monetary)
    log = read_transactions(args.transactions, Columns(args.customer_column, args.date_column,
                                                       args.amount_column), args.date_format)
    asof = None
    if args.asof:
        asof = pd.to_datetime(args.asof, errors="coerce")
        if pd.isna(asof):
            raise InputError([Issue("--asof", "must be a date (YYYY-MM-DD)", args.asof)])
    scores = score(log, asof, thresholds)
    sizes = segment_sizes(scores)
    _emit(sizes, args.output)
    if args.assignments:
        _emit(scores, args.assignments)
    print(f"{len(scores)} customers in {len(sizes)} segments", file=sys.stderr)
    return ExitCode.OK


def _emit(frame: pd.DataFrame, path: str | None) -> None:
    from optimizer.io.tables import write_frame

    if path is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        write_frame(Path(path), frame)


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None


