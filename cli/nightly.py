"""The nightly job's commands: `nightly` and `rollback`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cli.args import explore_share, fraction, gap_fraction, non_negative_float, positive_float, positive_int
from cli.exit_codes import ExitCode
from jobs.nightly.guardrails import Thresholds


def register(sub: Any) -> None:
    """nightly, rollback."""
    n = sub.add_parser("nightly", help="re-solve, check the guardrails, publish or keep the "
                       "active plan (exit 0 published, 7 kept previous)")
    n.add_argument("--catalog", required=True, metavar="DIR|FILE",
                   help="today's catalog and stock: JSON file, CSV/Parquet folder, or zip")
    n.add_argument("--exposures", metavar="LOGS", help="experiment logs: re-estimate responses")
    n.add_argument("--time-limit", type=positive_float, default=600.0, metavar="S",
                   help="seconds for all solving (default 600)")
    n.add_argument("--store", metavar="URL", help="the service's store (default: "
                   "OFFEROPT_DATABASE_URL, else the SQLite file under OFFEROPT_DATA_DIR)")
    n.add_argument("--publish", action="store_true",
                   help="publish when every guardrail passes (without it: a dry run)")
    n.add_argument("--run-key", help="a rerun with the same key does nothing new (default: a "
                   "digest of the inputs and settings)")
    n.add_argument("--report-dir", type=Path, help="where the JSON and HTML reports go "
                   "(default: DATA_DIR/reports)")
    n.add_argument("--method", choices=("exact", "decompose", "auto"), default="auto")
    n.add_argument("--gap", type=gap_fraction, default=1e-4, metavar="G")
    n.add_argument("--threads", type=positive_int)
    n.add_argument("--max-churn", type=fraction, metavar="F",
                   help="share of segments whose offer set may change by choice")
    n.add_argument("--change-penalty", type=non_negative_float, default=0.0, metavar="X",
                   help="objective cost per changed offer")
    n.add_argument("--split-traffic", action="store_true",
                   help="let the plan split a segment's views between weighted offer sets")
    n.add_argument("--explore", type=explore_share, default=0.0, metavar="F",
                   help="show exploration sets (other discounts and perks of the plan's cells, "
                   "the less certain more often) to up to this share of each segment's views")
    defaults = Thresholds()
    for name, help_text in (
        ("objective_tolerance", "new objective may be this much below yesterday's plan "
                                "re-evaluated and made feasible (default %(default)s)"),
        ("max_no_offer_increase", "allowed rise in the share of segments with no offer"),
        ("max_gap", "largest solver gap to publish (default %(default)s)"),
        ("max_objective_ratio", "objective above this x yesterday's is suspect"),
        ("max_estimate_drift", "largest share of responses whose take rate moved beyond x2"),
    ):
        n.add_argument(f"--{name.replace('_', '-')}", dest=name, type=non_negative_float,
                       default=getattr(defaults, name), help=help_text)
    n.set_defaults(run=_nightly)

    r = sub.add_parser("rollback", help="re-activate the previous plan (as POST /v1/plans/rollback)")
    r.add_argument("--to", type=positive_int, metavar="VERSION", help="a publication version")
    r.add_argument("--store", metavar="URL", help="the service's store (default as for nightly)")
    r.set_defaults(run=_rollback)


def _nightly(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from api.joblog import JobLog
    from api.settings import from_environment
    from api.store import make_engine
    from jobs.nightly.run import NightlySettings, run_nightly
    from optimizer.stability.reference import Stability

    config = from_environment()
    url, create_folder, name = store_url(args)
    make_engine(url, create_folder, name).dispose()  # a bad URL or folder is refused first
    log = JobLog("nightly")
    settings = NightlySettings(
        catalog=args.catalog, exposures=args.exposures, time_limit=args.time_limit,
        store_url=url, publish=args.publish,
        run_key=args.run_key, method=args.method, gap=args.gap, threads=args.threads,
        report_dir=args.report_dir or Path(config["DATA_DIR"]) / "reports",
        stability=Stability(args.max_churn, args.change_penalty),
        thresholds=Thresholds(**{k: getattr(args, k) for k in asdict(Thresholds())}),
        publish_pause=config["PUBLISH_PAUSE_SECONDS"], split_traffic=args.split_traffic,
        explore=args.explore, started=args.started)
    try:
        code = run_nightly(settings, log)
    except SQLAlchemyError as exc:  # the store is unreachable or refused us
        log.error("store_error", error=str(exc).splitlines()[0])
        return ExitCode.ERROR
    outcomes: dict[int, str] = {
        ExitCode.OK: "published" if args.publish else "dry run: every guardrail passed",
        ExitCode.KEPT_PREVIOUS: "kept the previous plan (a guardrail failed)" if args.publish
        else "dry run: a guardrail failed"}
    print(outcomes.get(code, "failed"), f"- report in {settings.report_dir}")
    return code


def store_url(args: argparse.Namespace) -> tuple[str, bool, str]:
    """The store's URL, whether its SQLite folder may be created (only the default store's),
    and what messages call it."""
    from api.settings import from_environment

    if args.store is not None:
        return args.store, False, "--store"
    explicit = bool(os.environ.get("OFFEROPT_DATABASE_URL"))
    return from_environment()["DATABASE_URL"], not explicit, \
        "OFFEROPT_DATABASE_URL" if explicit else "OFFEROPT_DATA_DIR"


def _rollback(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from api.store import Conflict, NotFound, Store

    store = Store.open(*store_url(args))
    try:
        version = store.rollback(f"cli:{getpass.getuser()}", args.to, field="--to")
    except (Conflict, NotFound) as exc:
        print(f"error: rollback: {exc}", file=sys.stderr)
        return ExitCode.INPUT_ERROR
    except SQLAlchemyError as exc:  # the store went away or refused the write
        print(f"error: rollback: the store refused the change: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return ExitCode.INPUT_ERROR
    entry = next(p for p in store.history(limit=5) if p["version"] == version)
    print(f"plan {entry['plan_id']} active again as version {version} (rolled back by "
          f"{entry['actor']})")
    return ExitCode.OK


