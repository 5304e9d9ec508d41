"""A frontier run read back from the store, as `GET /v1/frontiers/{id}` answers it and the
workbench's frontier page shows it (both read it through these functions).

The run itself is written by its own process (`api.workbench_job`): its `options` (kind
`frontier`: vary, values, time limit, plan id, currency) and its `progress` (the points solved
so far, the solve in course, and whether the curve is complete).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import url_for

from api.store import NotFound, Store
from api.workbench_job import is_frontier

if TYPE_CHECKING:  # the library's frontier is imported when a frontier is read, not before
    from optimizer.frontier import Frontier


def frontier_run(store: Store, frontier_id: str) -> dict[str, Any]:
    """The run of a frontier; `NotFound` for an unknown id and for a run that is a solve."""
    try:
        run = store.run(frontier_id)
    except NotFound:
        raise NotFound(f"frontier {frontier_id!r}") from None
    if not is_frontier(json.loads(run["options"])):
        raise NotFound(f"frontier {frontier_id!r}")
    return run


def frontier_curve(run: dict[str, Any]) -> Frontier:
    """The points the run has recorded so far, as a `Frontier`."""
    from optimizer.frontier import Frontier, FrontierPoint

    options = json.loads(run["options"])
    state = json.loads(run["progress"]) if run["progress"] else {}
    names = FrontierPoint.__dataclass_fields__
    points = tuple(FrontierPoint(**{**{k: v for k, v in p.items() if k in names},
                                    "binding": tuple(p.get("binding") or ())})
                   for p in state.get("points") or ())
    return Frontier(options["vary"], points, str(run["catalog_name"]), options.get("currency"),
                    options["time_limit"], complete=bool(state.get("complete")))


def frontier_body(run: dict[str, Any]) -> dict[str, Any]:
    """The frontier's status and its points so far (`FrontierRun` of the API)."""
    options = json.loads(run["options"])
    state = json.loads(run["progress"]) if run["progress"] else {}
    curve = frontier_curve(run)
    return {
        "id": run["id"], "status": run["status"], "plan_id": options.get("plan_id"),
        "vary": options["vary"], "values": options["values"], "time_limit": options["time_limit"],
        "method": options.get("method"),
        "points": [{**p.to_dict(), "marginal": m}
                   for p, m in zip(curve.points, curve.marginal(), strict=True)],
        "stops_costing_at": curve.stops_costing_at, "stops_costing": curve.stop_words(),
        "complete": curve.complete,
        "current": state.get("current"), "error": run["error"], "created_at": run["created_at"],
        "started_at": run["started_at"], "finished_at": run["finished_at"],
        "cancel_requested": bool(run["cancel_requested"]), "links": frontier_links(run["id"]),
    }


def frontier_links(run_id: str) -> dict[str, str]:
    return {"self": url_for("workbench_api.get_frontier", frontier_id=run_id),
            "plot": url_for("workbench_api.frontier_plot", frontier_id=run_id)}
