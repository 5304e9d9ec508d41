"""The nightly re-optimization job: load, re-estimate, re-solve, guard, publish, report.

The storefront ends up serving either the new plan or yesterday's, never a broken one:
the plan, its catalog, its publication and the job's ledger row are written in one
transaction, and only after every guardrail passed. A second run with the same run key
finds the first one's outcome and does nothing new.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from api.joblog import JobLog
from api.store import Conflict, Store
from cli.exit_codes import ExitCode
from jobs.nightly.guardrails import Thresholds, Yesterday, evaluate
from jobs.nightly.ledger import Ledger, NightlyStatus, Outcome
from optimizer.errors import InputError, OfferOptError
from optimizer.model.instance import Instance
from optimizer.plan.model import Plan
from optimizer.stability.reference import Stability

if TYPE_CHECKING:
    from optimizer.estimation.exposures import Exposures
    from optimizer.plan.check import CheckReport
    from optimizer.solve.verify import Verified

HEARTBEAT_SECONDS = 10.0
# after the solve and its check (`solve_budget` reserves that): guardrails, diff, storing
# and report took 16 s at 15M responses (benchmarks/README.md); reserved here 2.5x that
AFTER_SOLVE_SECONDS = 2.5  # and the report's plots, whatever the size
AFTER_SOLVE_SECONDS_PER_RESPONSE = 2.5e-6


@dataclass(frozen=True)
class NightlySettings:
    catalog: str
    store_url: str
    report_dir: Path
    exposures: str | None = None
    time_limit: float = 600.0
    publish: bool = False
    run_key: str | None = None
    method: str = "auto"
    gap: float = 1e-4
    threads: int | None = None
    stability: Stability = field(default_factory=Stability)
    thresholds: Thresholds = field(default_factory=Thresholds)
    publish_pause: float = 0.0  # fault injection for crash tests only
    split_traffic: bool = False  # weighted offer sets per segment (spec section 7)
    explore: float = 0.0  # share of each segment's views shown exploration sets (section 9)
    started: float | None = None  # time.monotonic() when the command started: the limit counts
    # from there (default: when the run starts)

    def run_key_or_digest(self) -> str:
        """The given key, or one derived from the input files' bytes and the settings, so a
        rerun on unchanged inputs is a no-op."""
        if self.run_key:
            return self.run_key
        digest = hashlib.sha256()
        for name in filter(None, (self.catalog, self.exposures)):
            path = Path(name)
            for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if f.is_file():
                    digest.update(f.name.encode() + f.read_bytes())
        options = {k: v for k, v in dataclasses.asdict(self).items()
                   if k not in ("catalog", "exposures", "store_url", "report_dir", "publish",
                                "started")}
        for name in ("split_traffic", "explore"):  # keys of runs without them stay the same
            if not options[name]:
                del options[name]
        digest.update(json.dumps(options, sort_keys=True, default=str).encode())
        return f"auto-{digest.hexdigest()[:16]}"


def run_nightly(settings: NightlySettings, log: JobLog) -> int:
    store = Store.open(settings.store_url)
    # the key never covers the recorded logs: they grow every second, and a retry must find
    # its first attempt (give --run-key, e.g. the date, for one run per night)
    run_key = settings.run_key_or_digest()
    log.bind(run_key=run_key)
    recorded = None if settings.exposures is not None else _recorded(store)
    ledger = Ledger(store) if settings.publish else None
    if ledger is not None:
        try:
            prior = ledger.begin(run_key)
        except Conflict as exc:
            log.error("run_key_busy", error=str(exc))
            return ExitCode.ERROR
        if prior is not None:
            log.info("already_done", status=prior["status"], version=prior["version"])
            _write_report(settings.report_dir, run_key, json.loads(prior["report"]), log)
            return int(prior["exit_code"])
    stop = threading.Event()
    if ledger is not None:
        threading.Thread(target=_beat, args=(ledger, run_key, stop), daemon=True).start()
    report: dict[str, Any] = {"format": "offeropt/nightly-report@1", "run_key": run_key,
                              "started_at": time.time(), "publish": settings.publish}
    try:
        return _run(settings, store, ledger, run_key, report, log, recorded)
    except Exception as exc:  # every failure is recorded, reported and logged as one line
        expected = isinstance(exc, OfferOptError | Conflict)
        error = exc.describe() if isinstance(exc, InputError) else \
            str(exc) if expected else f"{type(exc).__name__}: {exc}"
        log.error("failed", error=error,
                  **({} if expected else {"traceback": traceback.format_exc()}))
        code = ExitCode.INPUT_ERROR if isinstance(exc, InputError) else ExitCode.ERROR
        report.update(outcome="failed", exit_code=int(code), error=error,
                      summary=f"failed: {error.splitlines()[0]}")
        if ledger is not None:
            ledger.fail(run_key, code, error, report)
        _write_report(settings.report_dir, run_key, report, log)
        return code
    finally:
        stop.set()


def _beat(ledger: Ledger, run_key: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        with contextlib.suppress(Exception):  # a missed beat is retried; a long silence counts
            ledger.beat(run_key)


def _run(settings: NightlySettings, store: Store, ledger: Ledger | None, run_key: str,
         report: dict[str, Any], log: JobLog, recorded: pd.DataFrame | None) -> int:
    from optimizer.plan.diff import contact_summary, inventory_rows, kpi_table, plan_diff
    from optimizer.solve.verify import solve_budget

    # the time limit covers loading, estimation, solves, the check and what follows
    started = time.monotonic() if settings.started is None else settings.started
    instance, uncertainty = _inputs(settings, report, log, recorded)
    active = store.active_publication()
    yesterday_plan = None if active is None else active.plan.plan()
    yesterday_instance = None if active is None else active.catalog.instance()
    report["previous_version"] = None if active is None else active.version
    log.info("active_plan", version=report["previous_version"])
    if recorded is not None and yesterday_plan is not None and yesterday_instance is not None:
        report["yesterday"] = _realized(recorded, yesterday_instance, yesterday_plan,
                                        report["previous_version"], log)

    left = settings.time_limit - (time.monotonic() - started)
    after = AFTER_SOLVE_SECONDS + AFTER_SOLVE_SECONDS_PER_RESPONSE * len(instance.responses)
    budget = solve_budget(instance, left - min(0.3 * left, after), settings.explore)
    explore = {"explore_seed": int(hashlib.sha256(run_key.encode()).hexdigest()[:8], 16),
               "uncertainty": uncertainty}  # new draws each night, the same on a rerun
    plan, check, solved_gap, solver = _solve(instance, yesterday_plan, settings, budget, log,
                                             explore)
    report["solver"] = solver
    fallback = _fallback_objective(plan)
    yesterday = None if yesterday_plan is None or yesterday_instance is None else \
        Yesterday(yesterday_plan, yesterday_instance, fallback)
    rails = evaluate(plan, check, instance, solved_gap, yesterday, settings.thresholds)
    failed = [g.name for g in rails if not g.passed]
    for g in rails:
        log.info("guardrail", name=g.name, passed=g.passed, value=g.value, limit=g.limit)
    report.update(guardrails=[g.to_dict() for g in rails], kpis=kpi_table(yesterday_plan, plan),
                  diff=plan_diff(yesterday_plan, plan),
                  inventory=inventory_rows(yesterday_plan, plan))
    if "channels" in (plan.kpis or {}):
        report["contacts"] = contact_summary(plan)
    if plan.exploration is not None:
        report["exploration"] = dict(plan.exploration)
    if plan.status == "error":
        raise OfferOptError(f"solver: must end with a plan, got an error: {plan.message}")
    ok = not failed
    code = ExitCode.OK if ok else ExitCode.KEPT_PREVIOUS
    if ledger is None:
        outcome = "dry_run"
        summary = ("dry run: every guardrail passed; --publish would publish" if ok else
                   f"dry run: guardrails failed ({', '.join(failed)}); the active plan would stay")
    else:
        outcome = NightlyStatus.PUBLISHED if ok else NightlyStatus.KEPT_PREVIOUS
        summary = "the new plan is published" if ok else \
            f"the previous plan stays active: {', '.join(failed)} failed"
    diff = report["diff"]
    summary += (f". {diff['segments_changed']} segments changed, {diff['offers_added']} offers "
                f"added, {diff['offers_removed']} removed.")
    report.update(outcome=str(outcome), exit_code=int(code), summary=summary,
                  finished_at=time.time())
    if ledger is not None:
        run_id, plan_id, version = ledger.record(run_key, Outcome(
            status=NightlyStatus(outcome), exit_code=int(code), catalog=instance, plan=plan,
            checked=check.ok, options=_options(settings), publish=ok,
            expected_version=report["previous_version"]), report, "nightly",
            settings.publish_pause)
        report.update(run_id=run_id, plan_id=plan_id, version=version)
    log.info("finished", outcome=str(outcome), exit_code=int(code), version=report.get("version"),
             failed_guardrails=failed)
    _write_report(settings.report_dir, run_key, report, log)
    return code


def _recorded(store: Store) -> pd.DataFrame | None:
    """The logs the storefront recorded; None until they hold shown views and a purchase
    (views alone would say that nobody buys, when the storefront only does not report
    purchases yet)."""
    from api.store.logs import recorded_logs

    logs = recorded_logs(store)
    shown = logs["shown"] == 1
    return logs if (logs.loc[shown, "views"] > 0).any() and logs["purchases"].sum() > 0 else None


def _inputs(settings: NightlySettings, report: dict[str, Any], log: JobLog,
            recorded: pd.DataFrame | None) -> tuple[Instance, pd.DataFrame | None]:
    """Today's instance, re-estimated from the logs when there are any, and the estimates'
    uncertainty (for exploration)."""
    from optimizer.io import load_instance

    instance = load_instance(settings.catalog)
    source = settings.exposures or ("recorded logs" if recorded is not None else None)
    report["inputs"] = {"catalog": settings.catalog, "exposures": source,
                        "segments": len(instance.segments), "responses": len(instance.responses),
                        "items": len(instance.items)}
    log.info("catalog_loaded", **report["inputs"])
    if source is None:
        return instance, None
    from optimizer.estimation.estimate import estimate
    from optimizer.estimation.exposures import load_exposures

    logs = load_exposures(settings.exposures, instance) if settings.exposures else \
        _recorded_exposures(recorded, instance, report)
    est = estimate(instance, logs)
    del logs  # 27.7M rows at a million segments: gone before the estimated instance is built
    source = est.responses["take_source"]
    from_data, kept = int((source == "data").sum()), int((source == "instance").sum())
    report["estimation"] = {"responses": len(est.responses), "from_data": from_data,
                            "pooled": len(est.responses) - from_data - kept,
                            "kept_from_instance": kept, "warnings": list(est.warnings)}
    log.info("estimated", **{k: v for k, v in report["estimation"].items() if k != "warnings"})
    # the estimates' table (every cell, with intervals) is kept only for exploration: at a
    # million segments it is gigabytes the solve does not need
    return est.to_instance(instance), est.responses if settings.explore > 0 else None


def _recorded_exposures(recorded: pd.DataFrame | None, instance: Instance,
                        report: dict[str, Any]) -> Exposures:
    """The recorded logs as estimation reads them: rows of segments, bundles and perks that
    today's catalog no longer has are left out (and counted in the report)."""
    from optimizer.estimation.exposures import exposures_from_frame
    from optimizer.io.fields import Locator

    assert recorded is not None
    ladders = instance.bundle_ladders()
    steps = pd.MultiIndex.from_tuples([(b, round(float(d), 9)) for b, ladder in
                                       zip(instance.bundles["id"], ladders, strict=True)
                                       for d in ladder])
    perks = pd.MultiIndex.from_frame(instance.perks[["bundle", "id"]])
    shown = recorded["shown"].to_numpy() == 1
    arm = pd.MultiIndex.from_arrays([recorded["bundle"], recorded["discount"].round(9)])
    offered = pd.MultiIndex.from_arrays([recorded["bundle"], recorded["perk"]])
    known = recorded["segment"].isin(instance.segments["id"]).to_numpy() & \
        recorded["bundle"].isin(instance.bundles["id"]).to_numpy() & \
        (~shown | arm.isin(steps)) & ((recorded["perk"] == "").to_numpy() | offered.isin(perks))
    report["inputs"]["recorded_rows"] = len(recorded)
    report["inputs"]["recorded_rows_left_out"] = int((~known).sum())
    return exposures_from_frame(recorded[known].reset_index(drop=True), instance,
                                Locator("recorded_logs", "json"), "recorded logs")


def _realized(recorded: pd.DataFrame, instance: Instance, plan: Plan, version: int,
              log: JobLog) -> dict[str, Any] | None:
    """What the active plan realized in its recorded logs, against what it expected."""
    from optimizer.io.fields import Locator
    from optimizer.measure import measure
    from optimizer.measure.text import headline

    logs = recorded[recorded["plan_version"] == version].reset_index(drop=True)
    if logs.empty:
        return None
    try:
        m = measure(logs, instance, plan, version, locator=Locator("recorded_logs", "json"),
                    name="recorded logs")
    except InputError as exc:  # logs the active catalog cannot read: reported, not fatal
        log.info("yesterday_not_measured", error=exc.describe())
        return {"version": version, "error": exc.describe()}
    log.info("yesterday_measured", version=version, realized=m.incremental_margin.value,
             expected=m.expected_incremental_margin)
    return {"version": version, "headline": headline(m), "measurement": m.to_dict()}


def _options(settings: NightlySettings) -> dict[str, Any]:
    return {"time_limit": settings.time_limit, "gap": settings.gap, "method": settings.method,
            "threads": settings.threads, "solver": "highs", "nightly": True,
            "split_traffic": settings.split_traffic, "explore": settings.explore,
            **dataclasses.asdict(settings.stability)}


def _solve(instance: Instance, yesterday: Plan | None, settings: NightlySettings,
           budget: float, log: JobLog, explore: dict[str, Any]
           ) -> tuple[Plan, CheckReport, float | None, dict[str, Any]]:
    """Solve warm-started from yesterday's plan. With stability settings, also solve without
    them (half the time each): the difference is what stability cost, and that solve's bound
    is the plan's bound. Returns the plan, its check (what is stored is what is checked), the
    gap of the problem solved, solver statistics."""
    from optimizer.solve.dispatch import SolveOptions, relative_gap, solve
    from optimizer.solve.verify import verify

    previous = None if yesterday is None else yesterday.optimized_offer_keys()
    stability = settings.stability if previous is not None else Stability()
    started = time.monotonic()
    # yesterday's multipliers start the decomposition's search near today's
    multipliers = () if yesterday is None else tuple(yesterday.solver.get("multipliers") or ())
    base = SolveOptions.chosen(vars(settings), previous=previous,
                               previous_multipliers=multipliers, **explore)
    share = 0.5 if stability.constrains else 1.0
    options = dataclasses.replace(base, time_limit=budget * share)
    checked = verify(solve(instance, options), options)
    free = checked.solution
    log.info("solved", run="free", status=free.status.value, objective=free.objective,
             bound=free.bound, gap=free.gap, seconds=round(free.seconds, 3))
    stats: dict[str, Any] = {"free": _stats(free)}
    if not stability.constrains:
        return (*_checked(checked), free.gap, stats)
    left = max(1.0, budget - (time.monotonic() - started))
    options = dataclasses.replace(base, time_limit=left, stability=stability)
    stable = solve(instance, options)
    # a solve stopped at its limit reports no penalized figures
    penalized = None if stable.stability is None else stable.stability.settings
    objective = None if penalized is None else penalized.penalized_objective
    bound = None if penalized is None else penalized.penalized_bound
    solved_gap = None if objective is None or bound is None else relative_gap(objective, bound)
    # the unconstrained solve's bound is a bound on every plan's value, this one's included
    if free.bound is not None and stable.objective is not None:
        stable = dataclasses.replace(stable, bound=max(free.bound, stable.objective))
    checked = verify(stable, options)
    stable = checked.solution
    log.info("solved", run="stable", status=stable.status.value, objective=stable.objective,
             penalized_gap=solved_gap, seconds=round(stable.seconds, 3))
    cost = None if free.objective is None or stable.objective is None else \
        free.objective - stable.objective
    stats["stable"] = {**_stats(stable), "penalized_gap": solved_gap}
    stats["stability_cost"] = {
        "absolute": cost, "relative": None if cost is None or not free.objective else
        cost / abs(free.objective), **dataclasses.asdict(stability)}
    return (*_checked(checked), solved_gap, stats)


def _checked(checked: Verified) -> tuple[Plan, CheckReport]:
    """The verified plan and its check; a solve without a plan gets its empty plan checked."""
    from optimizer.plan.check import check_plan
    from optimizer.plan.document import build_plan

    if checked.plan is not None and checked.report is not None:
        return checked.plan, checked.report
    plan = build_plan(checked.solution)
    return plan, check_plan(checked.solution.instance, plan.to_dict())


def _fallback_objective(plan: Plan) -> float | None:
    """Yesterday's plan re-evaluated and made feasible: from the solve's report, else (a solve
    stopped at its deadline reports none) from the plans it found on the way."""
    from optimizer.stability.warm import FALLBACK_HOW

    previous = plan.solver.get("previous")
    if previous is not None:
        return previous.get("fallback_objective")
    return next((float(p["objective"]) for p in plan.solver.get("plans") or []
                 if p["how"] == FALLBACK_HOW), None)


def _stats(solution: Any) -> dict[str, Any]:
    previous = {} if solution.stability is None else solution.stability.previous.to_dict()
    return {"status": solution.status.value, "method": solution.method,
            "objective": solution.objective, "bound": solution.bound, "gap": solution.gap,
            "seconds": round(solution.seconds, 3), **{f"previous_{k}": v for k, v in
                                                       previous.items()}}


def _write_report(directory: Path, run_key: str, report: dict[str, Any], log: JobLog) -> None:
    from jobs.nightly.report import render_html
    from optimizer.io.tables import write_json, write_text

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_key)
    write_json(directory / f"{safe}.json", report)
    write_text(directory / f"{safe}.html", render_html(report))
    log.info("report_written", json=str(directory / f"{safe}.json"),
             html=str(directory / f"{safe}.html"))
