"""The service's commands: `demo` (the main job) and `serve`."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from cli.args import positive_int
from cli.exit_codes import ExitCode
from cli.solving import load
from optimizer.errors import InputError, Issue

DEMO = Path(__file__).resolve().parent.parent / "instances" / "demo"


def register(sub: Any) -> None:
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
    from optimizer.plan.report import summary

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
        return ExitCode.ERROR
    plan = store.plan_object(run["plan_id"])
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

