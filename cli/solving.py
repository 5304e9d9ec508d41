"""The library's own commands: validate, solve, check, convert, generate. They load neither
Flask nor SQLAlchemy."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cli.args import explore_share, gap_fraction, positive_float, positive_int
from cli.exit_codes import ExitCode
from optimizer.errors import InputError, Issue, file_error
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan
from optimizer.solve.methods import Method, Solver, Where


def register(sub: Any) -> None:
    """validate, solve, check, convert, generate."""

    v = sub.add_parser("validate", help="check an instance against every rule of the spec")
    v.add_argument("instance", help="JSON file, CSV/Parquet folder, or zip of a folder")
    v.set_defaults(run=_validate)

    s = sub.add_parser("solve", help="solve an instance and print or write the plan")
    s.add_argument("instance")
    _solve_options(s)
    s.set_defaults(run=_solve)

    c = sub.add_parser("check", help="re-verify a plan against an instance, independently")
    c.add_argument("instance")
    c.add_argument("plan", help="an offeropt/plan@1 JSON file")
    c.set_defaults(run=_check)

    k = sub.add_parser("convert", help="write an instance in another form")
    k.add_argument("source")
    k.add_argument("target", help="a .json file, or a folder for CSV/Parquet")
    k.add_argument("--to", choices=("json", "csv", "parquet"),
                   help="output form (default: json for .json targets, else csv)")
    k.set_defaults(run=_convert)

    g = sub.add_parser("generate", help="write a seeded, realistic random instance")
    g.add_argument("--segments", type=positive_int, required=True)
    g.add_argument("--seed", type=int, required=True)
    g.add_argument("--responses-per-segment", type=positive_int, default=15)
    g.add_argument("--items", type=positive_int, help="catalog size (default: from --segments)")
    g.add_argument("--bundles", type=positive_int, help="bundle count (default: from --items)")
    g.add_argument("--name", help="instance name")
    g.add_argument("-o", "--output", required=True, help="a .json file, or a folder")
    g.add_argument("--to", choices=("json", "csv", "parquet"))
    g.add_argument("--profile", choices=("default", "realistic"), default="default",
                   help="default: the original generator (same output per seed); realistic: a "
                        "hard catalog, with heavy-tailed views, tight stock on about half the "
                        "items and every policy limit calibrated to bind")
    g.add_argument("--contexts", type=int, choices=range(5), default=0, metavar="K",
                   help="group the segments into audiences of K contexts each (1-4: cart, "
                        "product page, post-purchase email, renewal talk; --segments a multiple "
                        "of K), with frequency and repeat caps calibrated to bind (default 0: "
                        "no audiences, the same output as before)")
    g.add_argument("--channels", action="store_true",
                   help="with --contexts: channels site (no capacity), email and cs-talk "
                        "(contact costs, capacities calibrated to bind)")
    g.set_defaults(run=_generate)


def _solve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write the plan: .json (plan@1) or .csv (one row per offer)")
    p.add_argument("--time-limit", type=positive_float, metavar="S",
                   help="seconds for the whole command: loading, solving, checking and writing")
    p.add_argument("--gap", type=gap_fraction, default=1e-4, metavar="G",
                   help="relative gap at which to stop (default 1e-4 = 0.01%%)")
    p.add_argument("--threads", type=positive_int, help="solver threads")
    p.add_argument("--solver", choices=[s.value for s in Solver], default=Solver.HIGHS.value)
    p.add_argument("--method", choices=[m.value for m in Method], default=Method.AUTO.value,
                   help="LP-guided (lp), one MIP (exact), Lagrangian decomposition, or pick by "
                        "size (auto, the default: lp up to 3M candidates, decompose above)")
    p.add_argument("--backend", choices=[w.value for w in Where], default=Where.LOCAL.value,
                   help="where the decomposition's per-segment step runs (default: here)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)")
    p.add_argument("--partitions", type=positive_int, metavar="N",
                   help="Dask partitions of the segments (default: two per worker)")
    p.add_argument("--split-traffic", action="store_true",
                   help="let the plan split a segment's views between weighted offer sets (the "
                        "LP optimum; -o PLAN.csv then also writes PLAN.sets.csv)")
    p.add_argument("--explore", type=explore_share, default=0.0, metavar="F",
                   help="add exploration sets: at most the share F (up to 0.5) of each "
                        "segment's views sees other discounts and perks of its cells, drawn "
                        "where the estimates are least certain, as far as every rule allows "
                        "(default 0: none)")
    p.add_argument("--explore-seed", type=int, default=0, metavar="N",
                   help="seed of the exploration's draws (default 0; the same seed, the same "
                        "draws: change it from one plan to the next)")
    p.add_argument("--uncertainty", metavar="FILE",
                   help="with --explore: the estimates' uncertainty, as `offeropt estimate -o` "
                        "writes it (.csv or .parquet; default: the same prior spread for every "
                        "cell)")
    p.add_argument("--top", type=int, default=3, help="offers shown per segment in the summary")
    p.add_argument("--segments-shown", type=int, default=12,
                   help="segments shown in the summary, by value")
    p.add_argument("--json", action="store_true", help="print the plan JSON instead of a summary")
    p.add_argument("--no-check", action="store_true", help="skip the independent plan check")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (default: when stderr is a terminal)")


def load(path: str) -> Instance:
    from optimizer.io import load_instance

    return load_instance(path)


def _validate(args: argparse.Namespace) -> int:
    inst = load(args.instance)
    for warning in inst.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{inst.name}: valid ({len(inst.items)} items, {len(inst.bundles)} bundles, "
          f"{len(inst.segments)} segments, {len(inst.responses)} responses)")
    return ExitCode.OK


def _solve(args: argparse.Namespace) -> int:
    if args.uncertainty and not args.explore:  # reported as argparse reports a usage error
        print("offeropt solve: error: --uncertainty needs --explore F (F > 0)", file=sys.stderr)
        return ExitCode.USAGE
    return _solve_and_report(load(args.instance), args)


def _solve_and_report(inst: Instance, args: argparse.Namespace) -> int:
    from cli.progress import ProgressBar
    from optimizer.plan.document import build_plan
    from optimizer.plan.report import summary
    from optimizer.solve.dispatch import SolveOptions, Status, solve
    from optimizer.solve.reports import CheckOutcome
    from optimizer.solve.verify import solve_budget, verified

    if args.output:  # refused now, not after a solve of many minutes
        writable(Path(args.output))
    run: dict[str, Any] = {}
    if args.uncertainty:
        from optimizer.exploration.uncertainty import load_uncertainty

        run["uncertainty"] = load_uncertainty(args.uncertainty)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    # the limit bounds the whole command: what loading took, and the check and the
    # writing still to come, are taken off what the solver gets
    budget = None if args.time_limit is None else \
        solve_budget(inst, args.time_limit - (time.monotonic() - args.started), args.explore)
    with ProgressBar(args.time_limit, enabled=show) as bar:
        options = SolveOptions.chosen(vars(args), time_limit=budget, progress=bar.update, **run)
        solution = solve(inst, options)
    if not args.no_check:
        solution = verified(solution, options)
    plan = build_plan(solution)
    if args.output:
        _write_plan(plan, Path(args.output))
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(summary(inst, plan, top=args.top, segments=args.segments_shown))
        if solution.check is not None:
            print(f"check: {solution.check}" if solution.check != CheckOutcome.PASSED else
                  "check: plan independently verified")
        if args.output:
            sets = sets_csv_path(Path(args.output))
            also = f" (offer sets in {sets})" if plan.offer_sets is not None and \
                Path(args.output).suffix.lower() == ".csv" else ""
            print(f"plan written to {args.output}{also}")
    if solution.check == CheckOutcome.FAILED:
        return ExitCode.CHECK_FAILED
    return {
        Status.OPTIMAL: ExitCode.OK, Status.FEASIBLE: ExitCode.OK,
        Status.INFEASIBLE: ExitCode.INFEASIBLE, Status.TIME_LIMIT: ExitCode.NO_PLAN_IN_TIME,
        Status.ERROR: ExitCode.ERROR,
    }[solution.status]


def _write_plan(plan: Plan, path: Path) -> None:
    from optimizer.io.tables import write_json, write_text
    from optimizer.plan.document import plan_csv, plan_sets_csv

    if path.suffix.lower() == ".csv":
        write_text(path, plan_csv(plan))
        if plan.offer_sets is not None:
            write_text(sets_csv_path(path), plan_sets_csv(plan))
    else:
        write_json(path, plan.to_dict())


def writable(path: Path) -> None:
    """Refuse an output file that could not be written, before any work is done for it."""
    import tempfile

    if path.is_dir():
        raise InputError([Issue(str(path), "must be a file path (or a new one)",
                                value_text="an existing folder")])
    try:  # the file is written beside itself and renamed: its folder must take new files
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise file_error(path, exc, "must be in a folder that can be written") from exc
    os.close(fd)
    os.unlink(probe)


def sets_csv_path(path: Path) -> Path:
    """Where `-o PLAN.csv` writes a split plan's offer sets: PLAN.sets.csv beside it."""
    return path.with_suffix(".sets.csv")


def _check(args: argparse.Namespace) -> int:
    from optimizer.io import load_plan
    from optimizer.plan.check import check_plan

    inst = load(args.instance)
    report = check_plan(inst, load_plan(args.plan))
    if report.malformed:  # not a plan the rules can be checked on: an input error, not a failed check
        raise InputError(report.malformed)
    if not report.ok:
        print(f"plan FAILS the check ({len(report.violations)} violations):")
        for line in report.violations:
            print(f"  {line}")
        return ExitCode.CHECK_FAILED
    objective = "no offers" if report.objective is None else f"objective {report.objective:,.2f}"
    print(f"plan is sound: every rule holds, {objective} recomputed and matching")
    return ExitCode.OK


def _convert(args: argparse.Namespace) -> int:
    from optimizer.io import write_instance

    inst = load(args.source)
    write_instance(inst, args.target, args.to)
    print(f"{inst.name}: written to {args.target}")
    return ExitCode.OK


def _generate(args: argparse.Namespace) -> int:
    from optimizer.io import write_instance
    from optimizer.model.generate import generate

    usage = None
    if args.channels and not args.contexts:
        usage = "--channels needs --contexts K (K >= 1)"
    elif args.contexts and args.segments % args.contexts:  # audiences of exactly K segments
        usage = f"--segments ({args.segments}) must be a multiple of --contexts ({args.contexts})"
    if usage:  # reported as argparse reports a usage error
        print(f"offeropt generate: error: {usage}", file=sys.stderr)
        return ExitCode.USAGE
    inst = generate(args.segments, args.seed, args.responses_per_segment, args.items,
                    args.bundles, args.name, profile=args.profile, contexts=args.contexts,
                    channels=args.channels)
    write_instance(inst, args.output, args.to)
    contacts = "".join(f", {len(t)} {n}" for n, t in (("audiences", inst.audiences),
                                                      ("channels", inst.channels)) if len(t))
    print(f"{inst.name}: {len(inst.items)} items, {len(inst.bundles)} bundles, "
          f"{len(inst.segments)} segments, {len(inst.responses)} responses{contacts} "
          f"-> {args.output}")
    return ExitCode.OK

