"""The analyses the page asks for: "why not" for a (segment, bundle), and what-if frontiers."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.frontier_runs import frontier_body, frontier_run
from api.store import FINISHED
from api.workbench import plan_views, queries
from api.workbench.blueprint import htmx, page, workbench
from api.workbench_api import explain_stored
from api.workbench_job import KIND
from optimizer.errors import InputError, Issue

REASONS = {"in_plan": "in the plan", "not_candidate": "not a candidate",
           "no_room": "no room for offers", "beaten": "beaten by the chosen offers",
           "beaten_within_gap": "beaten, within the solve's gap",
           "favoured_at_multipliers": "favoured at the shadow prices"}


@workbench.post("/plans/<plan_id>/why-not")
@page("Why a segment is (not) shown a bundle in a plan: the answer as an HTML fragment (htmx), "
      "or the plan's page with the answer in place (a plain form)")
def why_not(plan_id: str) -> Any:
    segment = (request.form.get("segment") or "").strip()
    bundle = (request.form.get("bundle") or "").strip() or None
    if not segment:
        raise InputError([Issue("segment", "must be a segment id of the catalog",
                                has_value=False)])
    stored = queries.plan_bundle(plan_id)
    instance, plan = queries.LOADED.get(stored)
    # as `GET /v1/plans/{id}/explain`: no re-solve on a request thread, the multipliers' proofs
    # (an LP, the first time, for a plan without multipliers of its own)
    answer = explain_stored(plan_id, instance, plan, segment, bundle).to_dict()
    if htmx():
        return render_template("workbench/_why_not.html", answer=answer, reasons=REASONS,
                               currency=stored.currency, plan_id=plan_id)
    return plan_views.plan_page_html(stored, why_not={"answer": answer, "reasons": REASONS,
                                                      "segment": segment, "bundle": bundle})


def _frontier_inputs(form: Any) -> tuple[str, list[Any], Any]:
    """The form's fields as the library's checks take them (`optimizer.frontier.checked_inputs`
    judges them): numbers where they are numbers, the text where not."""
    def as_number(raw: str) -> Any:
        try:
            return float(raw)
        except ValueError:
            return raw

    values = [as_number(v.strip()) for v in form.getlist("values") if v.strip()]
    return (form.get("vary") or "").strip(), values, as_number((form.get("time_limit") or "").strip())


@workbench.post("/plans/<plan_id>/frontier")
@page("Start a what-if frontier on a plan's catalog: a background run", ok=303,
      what="Redirect to the frontier's page")
def start_frontier(plan_id: str) -> Response:
    """As `POST /v1/frontiers`: the library checks the inputs against the plan's catalog, and
    the frontier is queued as a run with the same options, so the API reads it too."""
    from optimizer.frontier import checked_inputs

    stored = queries.plan_bundle(plan_id)
    instance, _ = queries.LOADED.get(stored)
    vary, values, time_limit = _frontier_inputs(request.form)
    most = current_app.config["MAX_SOLVE_TIME_LIMIT"]
    if isinstance(time_limit, float) and time_limit > most:
        raise InputError([Issue("time_limit", f"must be at most {most:g} seconds", time_limit)])
    _, checked = checked_inputs(instance, vary, values, time_limit)
    options = {"kind": KIND, "vary": vary, "values": checked, "time_limit": float(time_limit),
               "method": None, "plan_id": plan_id, "currency": instance.currency}
    run_id = queries.store().queue_on_plan_catalog(plan_id, options)
    return redirect(url_for("workbench.frontier_page", run_id=run_id), 303)


def _frontier_context(run_id: str) -> dict[str, Any]:
    """The frontier as `GET /v1/frontiers/{id}` answers it, plus what the page shows."""
    from optimizer.frontier.frontier import FRACTIONS

    run = frontier_run(queries.store(), run_id)
    body = frontier_body(run)
    vary = str(body["vary"])
    words = plan_views.VARY_WORDS.get(vary, vary.replace("stock:", "stock of "))
    points = body["points"]
    return {"run": run, "frontier": body, "options": json.loads(run["options"]),
            "points": points, "vary_words": words, "current": body["current"],
            "finished": run["status"] in FINISHED, "verdict": body["stops_costing"],
            "fraction": vary in FRACTIONS, "money_limit": vary == "promotion_budget",
            "chart": {"vary": vary, "vary_label": words,
                      "points": [{"value": p["value"], "objective": p["objective"],
                                  "bound": p["bound"]} for p in points]},
            "currency": json.loads(run["options"]).get("currency")}


@workbench.get("/frontiers/<run_id>")
@page("A what-if frontier: its points as they are solved, and the curve")
def frontier_page(run_id: str) -> str:
    return render_template("workbench/frontier.html", **_frontier_context(run_id))


@workbench.get("/frontiers/<run_id>/progress")
@page("A frontier's points: the fragment its page polls every second")
def frontier_progress(run_id: str) -> str:
    return render_template("workbench/_frontier_progress.html", **_frontier_context(run_id))
