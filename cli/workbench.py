"""The workbench's commands (issue 17): `explain` (why a bundle is or is not in a plan) and
`frontier` (incremental margin against one limit, re-solved across its values). They never
load Flask; SQLAlchemy only when `explain` reads a plan from the service's store."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.args import positive_float
from cli.exit_codes import ExitCode
from cli.solving import load, writable
from optimizer.errors import InputError, Issue

if TYPE_CHECKING:
    from optimizer.model.instance import Instance
    from optimizer.plan.model import Plan

WIDTH = 100
FRONTIER_SECONDS = 60.0  # the default --time-limit of `frontier`
WRITE_RESERVE = 0.5  # seconds kept from a frontier's limit for writing its files and table
# ... and for the process's exit (the interpreter finalizing the solver's, pandas' and
# matplotlib's modules: 0.4-0.5 s measured on a loaded 2-core box)
EXIT_RESERVE = 0.5
GLOSSARY = ("Glossary: at the multipliers = a value less what its use of each scarce row costs at "
            "that row's multiplier (margin per unit of the row); bound = no plan earns more; a loss "
            "is proven when every plan making the other choice earns at most the plan's value less "
            "it.")


def register(sub: Any) -> None:
    """explain, frontier."""
    e = sub.add_parser("explain", help="why each bundle is or is not in a plan, for one segment")
    e.add_argument("plan", help="an offeropt/plan@1 JSON file (with --instance), or a plan of "
                                "the service's store: `active`, a published version (v3) or a "
                                "plan id")
    e.add_argument("--instance", metavar="INSTANCE",
                   help="for a plan file: the instance it was solved from (JSON file, "
                        "CSV/Parquet folder, zip); a stored plan brings its own")
    e.add_argument("--store", metavar="URL", help="the service's store, for a stored plan "
                                                  "(default as for nightly)")
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

    if args.instance is not None:
        inst, plan = load(args.instance), Plan.from_dict(load_plan(args.plan))
    elif Path(args.plan).is_file():
        raise InputError([Issue("--instance", "must be given with a plan file (the instance the "
                                "plan was solved from)", None)])
    else:
        inst, plan = _stored(args)
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


def _stored(args: argparse.Namespace) -> tuple[Instance, Plan]:
    """The stored plan `args.plan` names (`active`, `vN` or a plan id) and its catalog."""
    from api.store import NotFound, Store
    from cli.nightly import store_url

    store = Store.open(*store_url(args))
    name = args.plan
    if name == "active" or (name[:1] == "v" and name[1:].isdigit()):
        found = store.active_publication() if name == "active" else store.publication(int(name[1:]))
        if found is None:
            raise InputError([Issue("plan", "must be a plan file, `active`, a published version "
                                    "or a plan id of the store", name)])
        return found.catalog.instance(), found.plan.plan()
    try:
        record = store.plan_record(name)
    except NotFound:
        raise InputError([Issue("plan", "must be a plan file, `active`, a published version or "
                                "a plan id of the store", name)]) from None
    return record.catalog.instance(), record.plan.plan()


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
    from optimizer.frontier import MIN_SECONDS_PER_POINT, checked_inputs, frontier, frontier_svg
    from optimizer.io.tables import write_json, write_text

    values = parse_values(args.values)
    least = MIN_SECONDS_PER_POINT * len(values)
    if args.time_limit < least + WRITE_RESERVE:
        raise InputError([Issue("--time-limit", f"must be at least {least + WRITE_RESERVE:g} s "
                                f"for {len(values)} values ({MIN_SECONDS_PER_POINT:g} s each, "
                                f"and {WRITE_RESERVE:g} s to write)", args.time_limit)])
    inst = load(args.instance)
    checked_inputs(inst, args.vary, values, args.time_limit, args.method)
    for path in (args.output, args.plot):
        if path:  # refused now, not after the solves (a missing folder is made, as for solve -o)
            writable(Path(path))
    if args.plot:  # matplotlib loaded on the curve's time, not on the writing's reserve
        import matplotlib.figure  # noqa: F401
    cur = f" {inst.currency}" if inst.currency else ""

    def report(p: Any) -> None:
        if not args.json:
            shown = "no plan" if p.objective is None else f"{p.objective:,.0f}{cur}"
            print(f"  {args.vary} = {number(p.value)}: {shown} ({p.status}"
                  f"{', checked' if p.checked else ', CHECK FAILED' if p.check_failed else ''}"
                  f", {p.seconds:.2f} s)", file=sys.stderr)

    # the limit bounds the whole command: it counts from the command's start (loading
    # included), and the files, the table and the exit are kept out of the curve's share
    curve = frontier(inst, args.vary, values, time_limit=args.time_limit, method=args.method,
                     progress=report, started=args.started,
                     reserve=WRITE_RESERVE + EXIT_RESERVE)
    if args.output:
        write_json(Path(args.output), curve.to_dict())
    if args.plot:
        write_text(Path(args.plot), frontier_svg(curve))
    if args.json:
        print(json.dumps(curve.to_dict(), indent=2))
        for line in frontier_verdicts(curve):
            print(line, file=sys.stderr)
    else:
        print(frontier_table(curve))
        for path, what in ((args.output, "frontier"), (args.plot, "plot")):
            if path:
                print(f"{what} written to {path}")
    return frontier_exit_code(curve)


def frontier_exit_code(curve: Any) -> ExitCode:
    """As `offeropt solve`'s: CHECK_FAILED when a point's solve found plans and none passed
    the independent check; without a plan at any value, INFEASIBLE (every value solved and
    infeasible), ERROR (a solver error) or NO_PLAN_IN_TIME; else OK (an incomplete curve
    with plans too: its table says which values were not solved)."""
    if curve.check_failed:
        return ExitCode.CHECK_FAILED
    if curve.has_plan:
        return ExitCode.OK
    statuses = {p.status for p in curve.points}
    if curve.complete and statuses == {"infeasible"}:
        return ExitCode.INFEASIBLE
    return ExitCode.ERROR if "error" in statuses else ExitCode.NO_PLAN_IN_TIME


def frontier_verdicts(curve: Any) -> list[str]:
    """The lines under the table: failed checks, values not solved, no plan at all."""
    out = []
    if curve.check_failed:
        out.append(f"CHECK FAILED at {curve.vary} = "
                   f"{', '.join(number(v) for v in curve.check_failed)}: no plan of "
                   f"{'those solves' if len(curve.check_failed) > 1 else 'that solve'} passed "
                   f"the independent check.")
    unsolved = curve.unsolved_words()
    if unsolved is not None:
        out.append(textwrap.fill(unsolved[:1].upper() + unsolved[1:] + ".", WIDTH))
    code = frontier_exit_code(curve)
    if code in (ExitCode.NO_PLAN_IN_TIME, ExitCode.INFEASIBLE, ExitCode.ERROR):
        out.append("No plan at any value" + {
            ExitCode.NO_PLAN_IN_TIME: " within the time limit.",
            ExitCode.INFEASIBLE: ": every value is infeasible.",
            ExitCode.ERROR: ": the solver failed."}[code])
    return out


def frontier_table(curve: Any) -> str:
    """The frontier in plain words: one row per value, where the limit stops costing money
    (or why that is not proven), what went wrong, and a one-line glossary."""
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
        per = "-" if slope is None else number(slope, 4)
        status = p.status + (", CHECK FAILED" if p.check_failed else "")
        rows = "" if not p.binding else "; " + ", ".join(p.binding[:MOST_ROWS]) + (
            f" and {len(p.binding) - MOST_ROWS} more" if len(p.binding) > MOST_ROWS else "")
        out.append(f"  {number(p.value):<22}{margin:>18}{bound:>16}{gap:>10}{used:>14}{per:>12}"
                   f"  {status}{rows}")
    for value in curve.unsolved:
        out.append(f"  {number(value):<22}{'-':>18}{'-':>16}{'-':>10}{'-':>14}{'-':>12}"
                   f"  not solved")
    if curve.has_plan:
        out.append(textwrap.fill(curve.stop_words(), WIDTH))
    out += frontier_verdicts(curve)
    out.append(textwrap.fill(
        "Glossary: bound = no plan at that limit earns more; gap = (bound - margin) / bound; "
        "used = what the plan uses of the limit; + per unit = margin gained per unit of the "
        "limit since the previous value; binding = rows at their limit.", WIDTH))
    return "\n".join(out)


MOST_ROWS = 3  # binding rows named per point in the table


def number(x: float, digits: int = 6) -> str:
    """A limit's value or a figure: separators, no e-notation (1,193,420; 0.0425; 19,730)."""
    from optimizer.frontier import number_text

    return number_text(x, digits)
