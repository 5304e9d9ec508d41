"""`POST /v1/events`: the storefront reports purchases; each is attributed and counted once.

A purchase names its bundle and the view that showed it: by the `exposure` token of that
view's answer, or by the customer id and segment (then the view is taken to be one served
by the active plan now, assigned as /v1/offers would assign it). It adds one purchase to
the exposures@1 cell in which that view showed the bundle (or held it out). A bundle the
view neither showed nor held out is stored but counted nowhere (`unattributed`). The
request is answered after its events are committed, so an acknowledged event is never lost,
and a resent event id is counted once.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from flask import Blueprint, current_app

from api.auth import MERCHANDISER, STOREFRONT, requires
from api.body import read_body
from api.exposure import HELD_OUT, UNRECORDED, Exposure, parse_token
from api.offers import ActiveIndex, IndexHolder
from api.openapi import doc
from api.problems import Problem
from api.schemas import EventsReceipt
from api.store import Store
from api.store.logs import Purchase, record_purchases, today
from optimizer.errors import InputError, Issue
from optimizer.io.safe_json import parse_json

events_api = Blueprint("events", __name__)
MAX_EVENTS = 1000  # per request
MAX_ID = 100  # characters of an event id
EVENT_TYPES = ("purchase",)


@events_api.post("/v1/events")
@doc("Report purchases: each is attributed to the view that showed its bundle, once per "
     "event id", "storefront", {200: EventsReceipt}, body={"application/json": "EventsRequest"})
@requires(STOREFRONT, MERCHANDISER)
def post_events() -> dict[str, Any]:
    try:
        body = parse_json(read_body(), "body")
    except InputError as exc:
        raise Problem(400, "Bad Request", str(exc.issues[0])) from exc
    listed = body.get("events") if isinstance(body, dict) else None
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_EVENTS:
        raise Problem(400, "Bad Request", f"events: must be a list of 1 to {MAX_EVENTS} events, "
                      f"got {type(listed).__name__ if not isinstance(listed, list) else len(listed)}")
    holder: IndexHolder = current_app.extensions["offeropt.index"]
    issues: list[Issue] = []
    indexes: dict[int, ActiveIndex | None] = {}
    purchases = [p for i, e in enumerate(listed)
                 if (p := _purchase(holder, e, f"events[{i}]", issues, indexes)) is not None]
    if issues:
        raise InputError(issues)
    store: Store = current_app.extensions["offeropt.store"]
    accepted, duplicates = record_purchases(store, purchases)
    return {"accepted": accepted, "duplicates": duplicates,
            "unattributed": sum(p.cell is None for p in purchases)}


def _purchase(holder: IndexHolder, event: Any, path: str, issues: list[Issue],
              indexes: dict[int, ActiveIndex | None]) -> Purchase | None:
    if not isinstance(event, dict):
        issues.append(Issue(path, "must be an object", event))
        return None
    found = len(issues)
    event_id, bundle = event.get("id"), event.get("bundle")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= MAX_ID or \
            not event_id.isprintable():
        issues.append(Issue(f"{path}.id", f"must be a printable string of 1 to {MAX_ID} "
                                          "characters, unique per event", event_id))
    if event.get("type", "purchase") not in EVENT_TYPES:
        issues.append(Issue(f"{path}.type", f"must be one of {', '.join(EVENT_TYPES)}",
                            event.get("type")))
    exposure = _view(holder, event, path, issues, indexes)
    if exposure is not None and (not isinstance(bundle, str) or
                                 bundle not in exposure.bundles):
        issues.append(Issue(f"{path}.bundle", "must be a bundle of the plan's catalog", bundle))
    if len(issues) > found or exposure is None:
        return None
    assert isinstance(event_id, str) and isinstance(bundle, str)
    cell = exposure.view.cell_of(bundle)
    row = None if cell is None else {
        "plan_version": exposure.view.version, "segment": exposure.view.segment,
        "set": exposure.view.set, "bundle": bundle, "shown": cell[1], "discount": cell[2],
        "perk": cell[3], "propensity": exposure.view.propensity, "day": today()}
    return Purchase(event_id, bundle, exposure.view.version, exposure.view.segment, row)


class _Named:
    """The view an event names, and the bundles its catalog knows."""

    def __init__(self, view: Exposure, bundles: Collection[str]) -> None:
        self.view, self.bundles = view, bundles


def _view(holder: IndexHolder, event: dict[str, Any], path: str, issues: list[Issue],
          indexes: dict[int, ActiveIndex | None]) -> _Named | None:
    """The view an event names: by its token, or by customer and segment."""
    if "token" in event:
        return _by_token(holder, event["token"], f"{path}.token", issues, indexes)
    named, customer = event.get("segment"), event.get("customer_id")
    index = holder.current()
    if not isinstance(customer, str) or not customer:
        issues.append(Issue(f"{path}.customer_id", "must be given (a string) when no token is",
                            customer))
        customer = None
    if not isinstance(named, str) or not index.has_segment(named):
        issues.append(Issue(f"{path}.segment", "must be a segment of the active plan when no "
                                               "token is given", named))
        return None
    return None if customer is None else _Named(_assigned(index, named, customer),
                                                index.bundle_items)


def _by_token(holder: IndexHolder, text: Any, path: str, issues: list[Issue],
              indexes: dict[int, ActiveIndex | None]) -> _Named | None:
    try:
        token = parse_token(text, path)
    except InputError as exc:
        issues.extend(exc.issues)
        return None
    if token.version not in indexes:  # each version looked up once per request
        indexes[token.version] = holder.index_of(token.version)
    index = indexes[token.version]
    if index is None or token.segment_pos >= index.segment_count:
        issues.append(Issue(path, "must name a view of a published plan", text))
        return None
    segment = index.segment_at(token.segment_pos)
    n_sets = index.set_count(segment)
    if (token.kind == HELD_OUT and index.holdout_fraction <= 0) or token.set_pos >= n_sets:
        issues.append(Issue(path, "must name a view of a published plan (its plan holds no "
                                  "such holdout or offer set)", text))
        return None
    k = None if token.kind == HELD_OUT else token.set_pos
    view, expected = index.exposure(segment, k), index.propensity(segment, k, token.kind)
    if abs(token.propensity - expected) > 1e-5 * expected:
        issues.append(Issue(path, f"must carry the propensity of the view it names "
                                  f"({expected:.6g})", text))
        return None
    if token.kind == UNRECORDED:  # served, never recorded: the purchase is counted nowhere
        view = Exposure.of(view.version, segment, view.set, expected, ())
    elif token.mask is not None:  # exclude_items dropped offers: only those shown count
        view = Exposure.of(view.version, segment, view.set, view.propensity,
                           (c for i, c in enumerate(view.cells) if token.mask >> i & 1))
    return _Named(view, index.bundle_items)


def _assigned(index: ActiveIndex, segment: str, customer: str) -> Exposure:
    if index.in_holdout(customer):
        return index.exposure(segment, None)
    k = index.choose(segment, customer)[0]
    return index.exposure(segment, k)
