"""`offeropt logs export`: what the storefront recorded, as exposures@1 logs (spec sections 6, 9)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from cli.exit_codes import ExitCode

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def register(sub: Any) -> None:
    """logs export."""
    logs = sub.add_parser("logs", help="the logs the storefront recorded")
    verbs = logs.add_subparsers(required=True, metavar="VERB")
    e = verbs.add_parser("export", help="write the recorded logs as exposures@1 rows, with "
                         "plan_version, set and propensity columns")
    e.add_argument("--since", type=since, metavar="VERSION|DATE",
                   help="only plan versions >= VERSION, or days >= DATE (YYYY-MM-DD, UTC)")
    e.add_argument("--store", metavar="URL", help="the service's store (default: "
                   "OFFEROPT_DATABASE_URL, else the SQLite file under OFFEROPT_DATA_DIR)")
    e.add_argument("-o", "--output", required=True, metavar="FILE", help=".parquet or .csv")
    e.set_defaults(run=_export)


def since(text: str) -> int | str:
    if text.isdigit() and int(text) >= 1:
        return int(text)
    if _DAY.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"must be a plan version (an integer >= 1) or a date "
                                     f"YYYY-MM-DD, got {text!r}")


def _export(args: argparse.Namespace) -> int:
    from api.store import Store
    from api.store.logs import recorded_logs
    from cli.nightly import store_url
    from optimizer.io.tables import write_frame

    store = Store.open(*store_url(args))
    version = args.since if isinstance(args.since, int) else None
    day = args.since if isinstance(args.since, str) else None
    logs = recorded_logs(store, since_version=version, since_day=day)
    write_frame(Path(args.output), logs)
    versions = sorted(set(logs["plan_version"]))
    shown = logs["shown"] == 1
    print(f"{len(logs)} log rows from plan version(s) {_listed(versions)}: "
          f"{int(logs.loc[shown, 'views'].sum())} offer impressions with "
          f"{int(logs.loc[shown, 'purchases'].sum())} purchases; "
          f"{int(logs.loc[~shown, 'purchases'].sum())} holdout purchases -> {args.output}",
          file=sys.stderr)
    return ExitCode.OK


def _listed(versions: list[int]) -> str:
    return ", ".join(map(str, versions)) if versions else "none"
