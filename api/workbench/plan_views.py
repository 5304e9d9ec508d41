"""Reading a plan, comparing it with the active one, publishing, rolling back, the history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.offers import served_plan_changed
from api.openapi import Param
from api.workbench import present, queries, session
from api.workbench.blueprint import page, workbench
from optimizer.errors import InputError, Issue
from optimizer.plan.diff import kpi_table, plan_diff
from optimizer.plan.model import Plan

MOST_SEGMENTS = 60  # segments whose offers the plan page lists; the CSV has them all
MOST_CHANGES = 25  # offers added and removed listed in the comparison
MONEY_KPIS = {"expected_incremental_margin", "expected_offer_revenue", "promotion_spend",
              "contact_cost"}
SHARE_KPIS = {"take_rate", "discounted_share", "avg_discount", "inventory_utilisation"}


def offers_by_segment(plan: Mapping[str, Any], names: Mapping[str, str],
                      views: Mapping[str, float], most: int = MOST_SEGMENTS
                      ) -> tuple[list[dict[str, Any]], int]:
    """The plan's offers per segment (plan order), each with its bundle's name, variant,
    reference price, price and savings; and how many segments are left out."""
    segments: dict[str, list[dict[str, Any]]] = {}
    for offer in plan.get("offers") or []:
        segments.setdefault(str(offer["segment"]), []).append(offer)
    out = []
    for segment, offers in list(segments.items())[:most]:
        rows = []
        for o in offers:
            reference, price = o.get("reference_price"), o.get("price")
            savings = None if reference is None or price is None else reference - price
            rows.append({**o, "name": names.get(o["bundle"], o["bundle"]),
                         "variant": variant_words(o.get("discount"), o.get("perk")),
                         "savings": savings})
        out.append({"segment": segment, "views": views.get(segment), "offers": rows,
                    "margin": sum(float(o.get("expected_incremental_margin") or 0) for o in offers)})
    return out, max(0, len(segments) - most)


def variant_words(discount: float | None, perk: str | None) -> str:
    words = "list price" if not discount else f"{100 * discount:g}% off"
    return f"{words}, with {perk}" if perk else words


def inventory_rows(kpis: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Stocked items, most used first: units used against stock."""
    rows = []
    for item, use in (kpis.get("inventory") or {}).items():
        stock, used = float(use["stock"]), float(use["used"])
        rows.append({"item": item, "name": names.get(item, item), "used": used, "stock": stock,
                     "share": used / stock if stock > 0 else 0.0})
    rows.sort(key=lambda r: -r["share"])
    return rows


def _kpi_text(key: str, value: float | None, currency: str | None) -> str:
    if value is None:
        return "n/a"
    if key in MONEY_KPIS:
        return present.money(value, currency)
    if key in SHARE_KPIS:
        return present.percent(value)
    if key == "segments_with_offers":
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _offer_keys(plan: Mapping[str, Any]) -> dict[tuple[Any, ...], Mapping[str, Any]]:
    return {(o["segment"], o["bundle"], round(float(o.get("discount") or 0), 9), o.get("perk")): o
            for o in plan.get("offers") or []}


def comparison(active: queries.PlanBundle, this: queries.PlanBundle) -> dict[str, Any]:
    """This plan against the active one: KPIs side by side, offers added and removed, the
    segments whose expected margin moved most (`optimizer.plan.diff`, as the nightly report)."""
    before, after = Plan.from_dict(active.plan), Plan.from_dict(this.plan)
    cur = this.currency
    kpis = [{**row, "before": _kpi_text(row["kpi"], row["yesterday"], cur),
             "after": _kpi_text(row["kpi"], row["today"], cur),
             "change_text": "" if row["change"] is None else f"{100 * row['change']:+.2f}%"}
            for row in kpi_table(before, after)]
    diff = plan_diff(before, after)
    old, new = _offer_keys(active.plan), _offer_keys(this.plan)
    names = {**active.bundle_names(), **this.bundle_names()}

    def listed(keys: list[tuple[Any, ...]], source: Mapping[tuple[Any, ...], Mapping[str, Any]]
               ) -> list[dict[str, Any]]:
        return [{"segment": k[0], "bundle": k[1], "name": names.get(k[1], k[1]),
                 "variant": variant_words(k[2], k[3]),
                 "margin": source[k].get("expected_incremental_margin")} for k in keys]

    added = [k for k in new if k not in old]
    removed = [k for k in old if k not in new]
    return {"kpis": kpis, "diff": diff,
            "added": listed(added[:MOST_CHANGES], new), "removed": listed(removed[:MOST_CHANGES], old),
            "more_added": max(0, len(added) - MOST_CHANGES),
            "more_removed": max(0, len(removed) - MOST_CHANGES)}


def publishable(bundle: queries.PlanBundle) -> bool:
    return bundle.checked and bundle.status in ("optimal", "feasible")


@workbench.get("/plans/<plan_id>")
@page("A plan: KPIs against the policy, inventory, offers per segment, shadow prices, "
      "the comparison with the active plan")
def plan_page(plan_id: str) -> str:
    return plan_page_html(queries.plan_bundle(plan_id))


def plan_page_html(bundle: queries.PlanBundle, why_not: dict[str, Any] | None = None) -> str:
    """The plan's page; `why_not` (`answer`, `reasons`, `segment`, `bundle`): with the answer
    of the why-not form in place (the form sent without htmx)."""
    plan_id = bundle.plan_id
    doc, catalog, cur = bundle.plan, bundle.catalog, bundle.currency
    segments = catalog.get("segments") or []
    views = {str(s["id"]): s.get("views") for s in segments}
    offers, more_segments = offers_by_segment(doc, bundle.bundle_names(), views)
    kpis = doc.get("kpis") or {}
    inventory = inventory_rows(kpis, bundle.item_names())
    store = queries.store()
    active_row = store.active()
    active = None
    compared = None
    if active_row is not None and active_row["plan_id"] != plan_id:
        active = queries.plan_bundle(str(active_row["plan_id"]))
        if doc.get("kpis") is not None:
            compared = comparison(active, bundle)
    return render_template(
        "workbench/plan.html", bundle=bundle, plan=doc, currency=cur,
        kpis=present.kpi_rows(kpis, catalog.get("policy") or {}, len(segments), cur) if kpis
        else [],
        inventory=inventory, inventory_chart={
            "labels": [r["item"] for r in inventory],
            "used": [round(100 * r["share"], 2) for r in inventory]},
        channels=list((kpis.get("channels") or {}).items()),
        audiences=list((kpis.get("audiences") or {}).items()),
        offers=offers, more_segments=more_segments,
        shadow=present.shadow_prices(doc, cur, catalog.get("policy") or {}),
        segment_ids=[str(s["id"]) for s in segments],
        bundles=sorted(bundle.bundle_names().items()),
        active_row=active_row, active=active, compared=compared,
        is_active=active_row is not None and active_row["plan_id"] == plan_id,
        publishable=publishable(bundle), frontier=frontier_form_defaults(bundle),
        why_not=why_not)


VARY_WORDS = {"promotion_budget": "promotion budget", "max_avg_discount": "maximum average discount",
              "max_discounted_share": "maximum discounted share"}


def frontier_form_defaults(bundle: queries.PlanBundle) -> dict[str, Any]:
    """The frontier form on the plan's page: the limits that may be varied (the policy's,
    then each stocked item's stock), each with its value in the catalog and three values
    around it."""
    from optimizer.frontier import POLICY_LIMITS
    from optimizer.frontier.frontier import FRACTIONS

    policy = bundle.catalog.get("policy") or {}
    choices: list[dict[str, Any]] = []
    for name in POLICY_LIMITS:
        now = policy.get(name)
        fraction = name in FRACTIONS
        choices.append({"vary": name, "label": VARY_WORDS.get(name, name), "now": now,
                        "fraction": fraction,
                        "values": _around(now, fraction) if now is not None else
                        ([0.02, 0.05, 0.1] if fraction else [])})
    for item in bundle.catalog.get("items") or []:
        stock = item.get("stock")
        if isinstance(stock, int | float):
            choices.append({"vary": f"stock:{item['id']}", "label": f"stock of {item['id']}",
                            "now": stock, "fraction": False, "values": _around(stock, False)})
    first = next((c for c in choices if c["values"]), choices[0] if choices else None)
    return {"choices": choices, "first": first}


def _around(now: float, fraction: bool) -> list[float]:
    """Half, the same, and half again: three values of a limit around today's."""
    if fraction:
        return [round(min(1.0, now * f), 4) for f in (0.5, 1.0, 1.5)]
    return [float(round(now * f)) for f in (0.5, 1.0, 1.5)]


@workbench.get("/plans/<plan_id>/publish")
@page("Confirm publishing a plan")
def confirm_publish(plan_id: str) -> str:
    bundle = queries.plan_bundle(plan_id)
    active_row = queries.store().active()
    active = None if active_row is None else queries.plan_bundle(str(active_row["plan_id"]))
    compared = comparison(active, bundle) if active is not None and \
        active.plan_id != plan_id and bundle.plan.get("kpis") is not None else None
    return render_template("workbench/confirm_publish.html", bundle=bundle, plan=bundle.plan,
                           currency=bundle.currency, active_row=active_row, active=active,
                           compared=compared, publishable=publishable(bundle))


@workbench.post("/plans/<plan_id>/publish")
@page("Publish a plan: it becomes the active plan (one transaction)", ok=303,
      what="Redirect to the history")
def publish(plan_id: str) -> Response:
    if request.form.get("confirm") != "yes":
        raise InputError([Issue("confirm", "must be 'yes': publish from the confirmation page",
                                request.form.get("confirm"))])
    actor = session.actor()
    assert actor is not None
    version = queries.store().publish(plan_id, actor, current_app.config["PUBLISH_PAUSE_SECONDS"])
    served_plan_changed()
    poll = float(current_app.config["INDEX_POLL_SECONDS"])
    flash(f"Plan {plan_id[:8]} is published as version {version}: the storefront serves it "
          f"{f'within {poll:g} s' if poll > 0 else 'now'}.")
    return redirect(url_for("workbench.history"), 303)


@workbench.get("/history")
@page("The publication history: every version, who published it and when")
def history() -> str:
    store = queries.store()
    rows = store.history(limit=100)
    active_row = store.active()
    return render_template("workbench/history.html", rows=rows, active_row=active_row)


def _to_version(raw: str | None) -> int | None:
    if raw in (None, ""):
        return None
    try:
        version = int(raw)
    except ValueError:
        raise InputError([Issue("to_version", "must be a published version number", raw)]) \
            from None
    if not 1 <= version < 2**63:
        raise InputError([Issue("to_version", "must be a published version number", version)])
    return version


@workbench.get("/rollback")
@page("Confirm a rollback", Param("to", "query", "the version to re-activate; default: the "
                                                 "plan before the active one", "integer"))
def confirm_rollback() -> str:
    store = queries.store()
    to_version = _to_version(request.args.get("to"))
    rows = store.history(limit=1000)
    active_row = store.active()
    target = None
    if to_version is not None:
        target = next((r for r in rows if r["version"] == to_version), None)
    elif active_row is not None:
        target = next((r for r in rows if r["plan_id"] != active_row["plan_id"]
                       and r["version"] < active_row["version"]), None)
    target_plan = None
    if target is not None:
        target_plan = store.plan_row(str(target["plan_id"]))["header"]
    return render_template("workbench/confirm_rollback.html", to_version=to_version,
                           target=target, target_plan=target_plan, active_row=active_row)


@workbench.post("/rollback")
@page("Roll back: re-activate the previous plan, or a given version", ok=303,
      what="Redirect to the history")
def rollback() -> Response:
    if request.form.get("confirm") != "yes":
        raise InputError([Issue("confirm", "must be 'yes': roll back from the confirmation page",
                                request.form.get("confirm"))])
    actor = session.actor()
    assert actor is not None
    version = queries.store().rollback(actor, _to_version(request.form.get("to_version")))
    served_plan_changed()
    flash(f"Rolled back: the plan is active again as version {version}.")
    return redirect(url_for("workbench.history"), 303)
