"""The workbench's commands (issue 17): `explain` (why a bundle is or is not in a plan) and
`frontier` (incremental margin against one limit, re-solved across its values). They load
neither Flask nor SQLAlchemy."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from cli.args import positive_float
from cli.exit_codes import ExitCode
from cli.solving import load, writable
from optimizer.errors import InputError, Issue

WIDTH = 100
FRONTIER_SECONDS = 60.0  # the default --time-limit of `frontier`
WRITE_RESERVE = 0.5  # seconds kept from a frontier's limit for writing its files
GLOSSARY = ("Glossary: at the multipliers = a value less what its use of each scarce row costs at "
            "that row's multiplier (margin per unit of the row); bound = no plan earns more; a loss "
            "is proven when every plan making the other choice earns at most the plan's value less "
            "it.")


def register(sub: Any) -> None:
    """explain, frontier."""
    e = sub.add_parser("explain", help="why each bundle is or is not in a plan, for one segment")
    e.add_argument("plan", help="an offeropt/plan@1 JSON file")
    e.add_argument("--instance", required=True, metavar="INSTANCE",
                   help="the instance the plan was solved from (JSON file, CSV/Parquet folder, zip)")
    e.add_argument("--segment", required=True, metavar="S", help="a segment id")
    e.add_argument("--bundle", metavar="B", help="one bundle id (default: every bundle of the "
                                                 "segment with a response)")
    e.add_argument("--resolve", action=argparse.BooleanOptionalAction, default=None,
                   help="re-solve with each excluded candidate required, for a tighter proven "
                        "loss (default: up to 40,000 candidates)")
    e.add_argument("--time-limit", type=positive_float, default=10.0, metavar="S",
                   help="seconds for those re-solves, all together (default 10)")
    e.add_argument("--json", action="store_true", help="print the explanation as JSON")
    e.set_defaults(run=_explain)

    f = sub.add_parser("frontier", help="incremental margin against one limit, re-solved "
                                        "(warm-started) across its values")
    f.add_argument("instance")
    f.add_argument("--vary", required=True, metavar="V",
                   help="promotion_budget, max_avg_discount, max_discounted_share or stock:ITEM")
    f.add_argument("--values", required=True, metavar="X,Y,...",
                   help="the limit's values, comma-separated (e.g. 100000,200000,400000)")
    f.add_argument("--time-limit", type=positive_float, default=FRONTIER_SECONDS, metavar="S",
                   help=f"seconds for the whole command, every point together (default "
                        f"{FRONTIER_SECONDS:g})")
    f.add_argument("--method", choices=("auto", "lp", "exact", "decompose"), default=None,
                   help="the solve method of each point (default auto: warm-started, exact "
                        "up to 400,000 candidates)")
    f.add_argument("-o", "--output", help="write the frontier as JSON")
    f.add_argument("--plot", metavar="FILE.svg", help="write the curve as an SVG plot")
    f.add_argument("--json", action="store_true", help="print the frontier JSON instead of a table")
    f.set_defaults(run=_frontier)


def _explain(args: argparse.Namespace) -> int:
    from optimizer.explain import explain
    from optimizer.io import load_plan
    from optimizer.plan.model import Plan

    inst = load(args.instance)
    plan = Plan.from_dict(load_plan(args.plan))
    found = explain(inst, plan, args.segment, args.bundle, resolve=args.resolve,
                    time_limit=args.time_limit)
    if args.json:
        print(json.dumps(found.to_dict(), indent=2))
        return ExitCode.OK
    lo, hi = found.min_offers, found.max_offers
    print(f"{inst.name}, segment {found.segment}: {found.segment_views:,.0f} views, "
          f"{lo}-{hi} offers per view")
    print(textwrap.fill(found.text, WIDTH, initial_indent="  ", subsequent_indent="  "))
    for entry in found.entries:
        name = f" ({entry.bundle_name})" if entry.bundle_name else ""
        rule = f": {entry.rule}" if entry.rule else ""
        print(f"\n{entry.bundle}{name}: {entry.reason_code.replace('_', ' ')}{rule}")
        print(textwrap.fill(entry.text, WIDTH, initial_indent="  ", subsequent_indent="  "))
    print("\n" + textwrap.fill(GLOSSARY, WIDTH))
    return ExitCode.OK


def parse_values(text: str) -> list[float]:
    """`--values 1000,2000,3000` as numbers; each part that is none is named by its place."""
    parts = [p.strip() for p in text.split(",")]
    issues, out = [], []
    for i, part in enumerate(parts):
        try:
            out.append(float(part))
        except ValueError:
            issues.append(Issue(f"values[{i}]", "must be a number", part))
    if issues:
        raise InputError(issues)
    return out


def _frontier(args: argparse.Namespace) -> int:
    from optimizer.frontier import MIN_SECONDS_PER_POINT, frontier, frontier_svg
    from optimizer.io.tables import write_json, write_text

    for path in (args.output, args.plot):
        if path:  # refused now, not after the solves
            writable(Path(path))
    values = parse_values(args.values)
    least = MIN_SECONDS_PER_POINT * len(values)
    if args.time_limit < least + WRITE_RESERVE:
        raise InputError([Issue("--time-limit", f"must be at least {least + WRITE_RESERVE:g} s "
                                f"for {len(values)} values ({MIN_SECONDS_PER_POINT:g} s each, "
                                f"and {WRITE_RESERVE:g} s to write)", args.time_limit)])
    inst = load(args.instance)
    budget = max(args.time_limit - (time.monotonic() - args.started) - WRITE_RESERVE, least)
    cur = f" {inst.currency}" if inst.currency else ""

    def report(p: Any) -> None:
        if not args.json:
            shown = "no plan" if p.objective is None else f"{p.objective:,.0f}{cur}"
            print(f"  {args.vary} = {number(p.value)}: {shown} ({p.status}"
                  f"{', checked' if p.checked else ''}, {p.seconds:.2f} s)", file=sys.stderr)

    curve = frontier(inst, args.vary, values, time_limit=budget, method=args.method,
                     progress=report)
    if args.output:
        write_json(Path(args.output), curve.to_dict())
    if args.plot:
        write_text(Path(args.plot), frontier_svg(curve))
    if args.json:
        print(json.dumps(curve.to_dict(), indent=2))
    else:
        print(frontier_table(curve))
        for path, what in ((args.output, "frontier"), (args.plot, "plot")):
            if path:
                print(f"{what} written to {path}")
    failed = any(p.objective is not None and not p.checked for p in curve.points)
    return ExitCode.CHECK_FAILED if failed else ExitCode.OK


def frontier_table(curve: Any) -> str:
    """The frontier in plain words: one row per value, where the limit stops costing money,
    and a one-line glossary."""
    cur = f" {curve.currency}" if curve.currency else ""
    total = sum(p.seconds for p in curve.points)
    out = [f"{curve.instance}: expected incremental margin against {curve.vary} "
           f"({len(curve.points)} points, {total:.1f} s)",
           f"  {curve.vary:<22}{'margin' + cur:>18}{'bound':>16}{'gap':>10}{'used':>14}"
           f"{'+ per unit':>12}  status, binding rows"]
    for p, slope in zip(curve.points, curve.marginal(), strict=True):
        margin = "-" if p.objective is None else f"{p.objective:,.0f}"
        bound = "-" if p.bound is None else f"{p.bound:,.0f}"
        gap = "-" if p.gap is None else f"{100 * p.gap:.3f}%"
        used = "-" if p.used is None else number(p.used)
        per = "-" if slope is None else f"{slope:,.4g}"
        status = p.status + ("" if p.checked or p.objective is None else ", CHECK FAILED")
        rows = "" if not p.binding else "; " + ", ".join(p.binding[:MOST_ROWS]) + (
            f" and {len(p.binding) - MOST_ROWS} more" if len(p.binding) > MOST_ROWS else "")
        out.append(f"  {number(p.value):<22}{margin:>18}{bound:>16}{gap:>10}{used:>14}{per:>12}"
                   f"  {status}{rows}")
    stop = curve.stops_costing_at
    if stop is not None:
        out.append(f"The limit stops costing money at {number(stop)}: past it the margin rises "
                   f"by no more than the solver gap.")
    elif any(p.objective is not None for p in curve.points):
        out.append("The limit still costs money at the largest value: a looser limit may earn "
                   "more.")
    if not curve.complete:
        out.append("Stopped before every value was solved.")
    out.append(textwrap.fill(
        "Glossary: bound = no plan at that limit earns more; gap = (bound - margin) / bound; "
        "used = what the plan uses of the limit; + per unit = margin gained per unit of the "
        "limit since the previous value; binding = rows at their limit.", WIDTH))
    return "\n".join(out)


MOST_ROWS = 3  # binding rows named per point in the table


def number(x: float) -> str:
    """A limit's value: whole numbers with separators, fractions to 6 significant digits."""
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:,.6g}"
