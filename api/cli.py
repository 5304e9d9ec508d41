"""The `offeropt` console script: the core commands plus the service's `demo` and `serve`.

The service's commands import the store, SQLAlchemy and Flask when they run, so that the
core commands (`validate`, `solve`, `check`, ...) load neither."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import secrets
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optimizer.cli import ExitCode, build_parser, load, run
from optimizer.cli_args import (
    fraction,
    gap_fraction,
    non_negative_float,
    positive_float,
    positive_int,
)
from optimizer.errors import InputError, Issue
from optimizer.guardrails import Thresholds

DEMO = Path(__file__).resolve().parent.parent / "instances" / "demo"


def main(argv: list[str] | None = None) -> int:
    parser, sub = build_parser()
    d = sub.add_parser("demo", help="the main job: solve the demo catalog, publish it, serve it")
    d.add_argument("--bind", default="127.0.0.1:8000", help="where the service listens")
    d.add_argument("--no-serve", action="store_true", help="solve and publish, then exit")
    d.set_defaults(run=_demo)

    v = sub.add_parser("serve", help="run the HTTP service (gunicorn) and the solve dispatcher")
    v.add_argument("--bind", default="127.0.0.1:8000", metavar="HOST:PORT")
    v.add_argument("--workers", type=positive_int, default=2, help="web worker processes")
    v.add_argument("--threads", type=positive_int, default=2, help="threads per web worker")
    v.add_argument("--ops-bind", metavar="HOST:PORT",
                   help="serve /healthz, /readyz and /metrics only on this address")
    v.set_defaults(run=_serve)
    _nightly_commands(sub)
    return run(parser, argv)


def _nightly_commands(sub: Any) -> None:
    n = sub.add_parser("nightly", help="re-solve, check the guardrails, publish or keep the "
                       "active plan (exit 0 published, 3 kept previous, 1 failed, 2 usage)")
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
    from api.nightly import NightlyExit, NightlySettings, run_nightly
    from api.settings import from_environment
    from api.store import make_engine
    from optimizer.stability import Stability

    config = from_environment()
    url, create_folder, name = _store_url(args)
    make_engine(url, create_folder, name).dispose()  # a bad URL or folder is refused first
    log = JobLog("nightly")
    settings = NightlySettings(
        catalog=args.catalog, exposures=args.exposures, time_limit=args.time_limit,
        store_url=url, publish=args.publish,
        run_key=args.run_key, method=args.method, gap=args.gap, threads=args.threads,
        report_dir=args.report_dir or Path(config["DATA_DIR"]) / "reports",
        stability=Stability(args.max_churn, args.change_penalty),
        thresholds=Thresholds(**{k: getattr(args, k) for k in asdict(Thresholds())}),
        publish_pause=config["PUBLISH_PAUSE_SECONDS"], split_traffic=args.split_traffic)
    try:
        code = run_nightly(settings, log)
    except SQLAlchemyError as exc:  # the store is unreachable or refused us
        log.error("store_error", error=str(exc).splitlines()[0])
        return NightlyExit.FAILED
    outcomes = {0: "published", 3: "kept the previous plan (a guardrail failed)"} if args.publish \
        else {0: "dry run: every guardrail passed", 3: "dry run: a guardrail failed"}
    print(outcomes.get(code, "failed"), f"- report in {settings.report_dir}")
    return code


def _store_url(args: argparse.Namespace) -> tuple[str, bool, str]:
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

    store = Store.open(*_store_url(args))
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


def _multiprocess_metrics() -> None:
    """prometheus_client picks its storage at import: set this before the app is imported."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="offeropt-metrics-"))


def _serve(args: argparse.Namespace) -> int:
    _multiprocess_metrics()
    from api.server import serve

    serve(args.bind, args.workers, args.ops_bind, args.threads)
    return ExitCode.OK


def _demo(args: argparse.Namespace) -> int:
    """Solve the demo catalog through the store, publish it, then serve it on localhost."""
    if not args.no_serve:
        _multiprocess_metrics()
    from api.jobs import execute_run
    from api.settings import from_environment
    from api.store import Store
    from optimizer.io.json_form import instance_to_document
    from optimizer.report import summary

    if not DEMO.exists():
        raise InputError([Issue(str(DEMO), "must exist (run from a clone of the repository)",
                                has_value=False)])
    for role in ("MERCHANDISER", "STOREFRONT"):
        os.environ.setdefault(f"OFFEROPT_{role}_TOKENS", f"{role.lower()}-{secrets.token_hex(8)}")
    config = from_environment()
    inst = load(str(DEMO))
    document = json.dumps(instance_to_document(inst), sort_keys=True)
    digest = hashlib.sha256(document.encode()).hexdigest()
    store = Store.open(config["DATABASE_URL"])
    options = {"time_limit": 60.0, "gap": 1e-4, "solver": "highs", "threads": 1}
    run_id, _ = store.submit(inst.name, document, digest, options, "demo", f"demo-{digest}")
    if store.run(run_id)["status"] == "queued" and store.claim_next("demo") == run_id:
        execute_run(config["DATABASE_URL"], run_id)  # the same code a solve process runs
    run = store.run(run_id)
    if run["plan_id"] is None:
        print(f"the demo run ended {run['status']}: {run['error']}", file=sys.stderr)
        return ExitCode.SOLVER_ERROR
    plan = json.loads(store.plan(run["plan_id"])["document"])
    print(summary(inst, plan))
    version = store.publish(run["plan_id"], "demo")
    print(f"\nplan {run['plan_id']} published as version {version} "
          f"(store: {config['DATABASE_URL']})")
    if args.no_serve:
        return ExitCode.OK
    base = f"http://{args.bind}"
    m, s = config["MERCHANDISER_TOKENS"][0], config["STOREFRONT_TOKENS"][0]
    print(f"""
Serving on {base} (Ctrl-C stops). Try, from another terminal:

  curl -s '{base}/v1/offers?segment=champions-cart' -H 'Authorization: Bearer {s}'
  curl -s '{base}/v1/offers?segment=loyal-checkout&customer_id=c-42&exclude_items=mouse-m2' \\
       -H 'Authorization: Bearer {s}'
  curl -s '{base}/v1/plans/active' -H 'Authorization: Bearer {s}'
  curl -s -X POST '{base}/v1/catalog-plans' -H 'Authorization: Bearer {m}' \\
       -H 'Content-Type: application/json' --data-binary @tests/data/demo.json
  curl -s '{base}/v1/runs/{run_id}' -H 'Authorization: Bearer {m}'
  curl -s '{base}/healthz'
  curl -s '{base}/openapi.json'
""", flush=True)
    from api.server import serve

    serve(args.bind, 2)
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
