"""What the workbench's pages say: numbers, validation issues and shadow prices in words.

Pure functions of plain values (no Flask), so the wording is tested on its own.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optimizer.errors import Issue, show_value
from optimizer.model.families import row_name


def money(value: float | None, currency: str | None = None, digits: int = 0) -> str:
    """`1,950 JPY`; `n/a` for a missing value."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{0.0 if round(value, digits) == 0 else value:,.{digits}f}"  # never `-0`
    return f"{text} {currency}" if currency else text


def signed_money(value: float | None, currency: str | None = None) -> str:
    """A change: `+1,950 JPY`, `-120 JPY`."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return ("+" if value > 0 else "") + money(value, currency)


def number(value: float | None, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def percent(value: float | None, digits: int = 2) -> str:
    """A share as a percentage: 0.0512 -> `5.12%`."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def when(stamp: float | None) -> str:
    """A store timestamp (seconds since the epoch) in UTC, to the second."""
    if stamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def short_id(identifier: str | None) -> str:
    return (identifier or "")[:8]


def significant(value: float) -> str:
    """A figure a sentence can say: `1,950`, `2.35`, `0.0421`."""
    if not math.isfinite(value):
        return "n/a"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


# -- validation issues -----------------------------------------------------------------

_PATH = re.compile(r"^(?P<table>[A-Za-z_][\w-]*(?:\.(?:csv|parquet|json|zip))?)"
                   r"(?:\[(?P<row>[^\]]+)\])?(?:\.(?P<field>.+))?$")


@dataclass(frozen=True)
class IssueRow:
    """One validation issue as the page lists it: where (table, row, field) and what."""

    path: str
    table: str
    row: str
    field: str
    problem: str
    label: str = ""  # what the row is, when known: its id

    @property
    def sentence(self) -> str:
        where = self.table + (f", {self.row}" if self.row else "") + \
            (f" ({self.label})" if self.label else "")
        what = f"{self.field} {self.problem}" if self.field else self.problem
        return f"In {where}: {what}." if where else f"{what[:1].upper()}{what[1:]}."


def issue_row(issue: Issue, labels: Mapping[str, str] | None = None) -> IssueRow:
    """`responses[2].take_rate` -> table `responses`, row `row 3`, field `take_rate`; CSV
    (`responses.csv[line 14]`) and Parquet (`[row 12]`) rows as the reader named them.
    `labels` names JSON rows by their ids (`row_labels`)."""
    problem = issue.rule
    if issue.value_text is not None:
        problem += f", got {issue.value_text}"
    elif issue.has_value:
        problem += f", got {show_value(issue.value)}"
    match = _PATH.match(issue.path)
    if match is None:
        return IssueRow(issue.path, "the catalog", "", issue.path, problem)
    table, row, field = match["table"], match["row"] or "", match["field"] or ""
    label = ""
    if row.isdigit():  # a JSON list index: rows are counted from 1 on the page
        label = (labels or {}).get(f"{table}[{row}]", "")
        row = f"row {int(row) + 1}"
    if not row and not field and "." not in table and table not in _TABLES:
        return IssueRow(issue.path, "the catalog", "", table, problem)  # a top-level field
    return IssueRow(issue.path, table, row, field, problem, label)


_TABLES = {"items", "bundles", "bundle_items", "perks", "segments", "responses", "audiences",
           "channels", "policy"}


def issue_rows(issues: Iterable[Issue], labels: Mapping[str, str] | None = None,
               most: int = 200, where: str | None = None) -> tuple[list[IssueRow], int]:
    """The first `most` issues as rows, and how many more there are. `where` names what
    issues not about the catalog's tables are about (`the upload form`)."""
    listed = list(issues)
    rows = [issue_row(i, labels) for i in listed[:most]]
    if where is not None:
        rows = [IssueRow(r.path, where, "", r.path, r.problem) for r in rows]
    return rows, max(0, len(listed) - most)


def row_labels(document: object) -> dict[str, str]:
    """`{"items[1]": "laptop-16-pro", "responses[2]": "champions-cart / laptop-care", ...}`:
    what each row of a JSON catalog is, by its ids, for the issues' words."""
    out: dict[str, str] = {}
    if not isinstance(document, dict):
        return out
    for table, value in document.items():
        if not isinstance(value, list):
            continue
        for k, row in enumerate(value):
            if not isinstance(row, dict):
                continue
            if isinstance(row.get("id"), str):
                out[f"{table}[{k}]"] = row["id"][:80]
            elif isinstance(row.get("segment"), str) and isinstance(row.get("bundle"), str):
                out[f"{table}[{k}]"] = f"{row['segment'][:40]} / {row['bundle'][:40]}"
    return out


# -- KPIs against the policy ---------------------------------------------------------------

NEAR = 0.95  # of a limit used: "near the limit" (the solve's summary warns from 95% too)

@dataclass(frozen=True)
class KpiRow:
    label: str
    value: str
    limit: str
    state: str  # "", "within", "near the limit", "at the limit", "over the limit"
    share: float | None  # of the limit used, for a meter


def kpi_rows(kpis: Mapping[str, Any], policy: Mapping[str, Any], segments: int,
             currency: str | None) -> list[KpiRow]:
    """The plan's KPIs, each beside the policy limit it answers to (if any)."""

    def row(label: str, value: float | None, shown: str, limit: float | None = None,
            limit_shown: str = "", floor: bool = False) -> KpiRow:
        if limit is None or value is None:
            return KpiRow(label, shown, limit_shown or "", "", None)
        tight = abs(value - limit) <= 1e-6 * max(1.0, abs(limit))
        broken = value < limit if floor else value > limit
        share = (limit / value if floor else value / limit) if (value if floor else limit) else None
        state = "at the limit" if tight else "over the limit" if broken else \
            "near the limit" if share is not None and share >= NEAR else "within"
        return KpiRow(label, shown, limit_shown, state, share)

    k = kpis
    rows = [
        row("Expected incremental margin", k.get("expected_incremental_margin"),
            money(k.get("expected_incremental_margin"), currency)),
        row("Expected offer revenue", k.get("expected_offer_revenue"),
            money(k.get("expected_offer_revenue"), currency)),
        row("Expected offer margin", k.get("expected_offer_margin"),
            money(k.get("expected_offer_margin"), currency)),
        row("Expected takes", k.get("expected_takes"), number(k.get("expected_takes"), 1)),
        row("Impressions", k.get("impressions"), number(k.get("impressions"))),
        row("Take rate", k.get("take_rate"), percent(k.get("take_rate"))),
        row("Attach rate", k.get("attach_rate"), percent(k.get("attach_rate"))),
        row("Discounted share", k.get("discounted_share"), percent(k.get("discounted_share")),
            policy.get("max_discounted_share"),
            _limit("at most", percent(policy.get("max_discounted_share")),
                   policy.get("max_discounted_share"))),
        row("Average discount", k.get("avg_discount"), percent(k.get("avg_discount")),
            policy.get("max_avg_discount"),
            _limit("at most", percent(policy.get("max_avg_discount")),
                   policy.get("max_avg_discount"))),
        row("Promotion spend", k.get("promotion_spend"), money(k.get("promotion_spend"), currency),
            policy.get("promotion_budget"),
            _limit("budget", money(policy.get("promotion_budget"), currency),
                   policy.get("promotion_budget"))),
        row("Aggregate margin rate", k.get("aggregate_margin_rate"),
            percent(k.get("aggregate_margin_rate")), policy.get("min_aggregate_margin_rate"),
            _limit("at least", percent(policy.get("min_aggregate_margin_rate")),
                   policy.get("min_aggregate_margin_rate")), floor=True),
        KpiRow("Segments with offers", f"{k.get('segments_with_offers', 0):,} of {segments:,}",
               "", "", None),
    ]
    if "contact_cost" in k:
        rows.append(row("Contact cost", k["contact_cost"], money(k["contact_cost"], currency)))
        roi = k.get("roi")
        rows.append(KpiRow("Return on spend", "n/a (no spend)" if roi is None else f"{roi:,.2f}",
                           "", "", None))
    return rows


def _limit(word: str, shown: str, value: Any) -> str:
    return "" if value is None else f"{word} {shown}"


# -- shadow prices ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ShadowPrice:
    """One priced or binding row of the plan: its name, use against its limit, and what
    loosening it by one unit is worth, in a sentence."""

    constraint: str
    name: str
    use: str
    multiplier: float | None
    sentence: str
    binding: bool


def shadow_prices(plan: Mapping[str, Any], currency: str | None,
                  policy: Mapping[str, Any] | None = None) -> list[ShadowPrice]:
    """The binding rows of the plan (`binding`), then the other rows the solve priced
    (`solver.multipliers`, the LP relaxation's duals or the decomposition's multipliers),
    highest shadow price first."""
    kpis = plan.get("kpis") or {}
    policy = policy or {}
    priced: dict[tuple[Any, ...], float] = {}
    for m in (plan.get("solver") or {}).get("multipliers") or []:
        priced[_key(m)] = float(m["multiplier"])
    out: list[ShadowPrice] = []
    seen = set()
    for b in plan.get("binding") or []:
        if "segments_at_max" in b:
            n = int(b["segments_at_max"])
            out.append(ShadowPrice(b["constraint"], "offers per view", f"{n:,} segments at it",
                                   None, f"{n:,} segment{'s' * (n != 1)} show their maximum "
                                   "number of offers per view.", True))
            continue
        if "more_binding" in b:
            n = int(b["more_binding"])
            out.append(ShadowPrice(b["constraint"], b["constraint"], "", None,
                                   f"... and {n:,} more {b['constraint']} rows at their limit.",
                                   True))
            continue
        key = _key(b)
        seen.add(key)
        multiplier = b.get("multiplier", priced.get(key))
        out.append(_shadow(b, multiplier, kpis, policy, currency, binding=True))
    rest = [m for m in (plan.get("solver") or {}).get("multipliers") or []
            if _key(m) not in seen and float(m["multiplier"]) > 0]
    rest.sort(key=lambda m: -float(m["multiplier"]))
    out += [_shadow(m, float(m["multiplier"]), kpis, policy, currency, binding=False)
            for m in rest]
    return out


def _key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row.get("constraint"), row.get("item"), row.get("audience"), row.get("bundle"),
            row.get("channel"))


def _shadow(row: Mapping[str, Any], multiplier: float | None, kpis: Mapping[str, Any],
            policy: Mapping[str, Any], currency: str | None, binding: bool) -> ShadowPrice:
    constraint = str(row.get("constraint"))
    name = row_name(constraint, row)
    use = _use(row, kpis, policy, currency)
    if multiplier is None:
        sentence = f"{name[:1].upper()}{name[1:]} is at its limit; the solve put no price on it."
    else:
        sentence = _worth(constraint, row, multiplier, kpis, currency)
    return ShadowPrice(constraint, name, use, multiplier, sentence, binding)


# policy rows: the KPI that meets the limit, and the words of the limit
_POLICY_USE = {"promotion_budget": ("promotion_spend", "of"),
               "max_discounted_share": ("discounted_share", "at most"),
               "max_avg_discount": ("avg_discount", "at most"),
               "min_aggregate_margin_rate": ("aggregate_margin_rate", "at least")}


def _use(row: Mapping[str, Any], kpis: Mapping[str, Any], policy: Mapping[str, Any],
         currency: str | None) -> str:
    """The row's use against its limit, from the row itself or the plan's KPIs."""
    constraint = row.get("constraint")
    item = row.get("item")
    stock = (kpis.get("inventory") or {}).get(item) if item else None
    if stock:
        return f"{number(stock['used'], 1)} of {number(stock['stock'])} units"
    if constraint in _POLICY_USE and kpis.get(_POLICY_USE[constraint][0]) is not None:
        kpi, word = _POLICY_USE[constraint]
        value, limit = kpis[kpi], policy.get(str(constraint))
        if constraint == "promotion_budget":
            shown = f"{money(value, currency)}" + (f" of {money(limit, currency)}"
                                                   if limit is not None else "")
        else:
            shown = percent(value) + (f" ({word} {percent(limit)})" if limit is not None else "")
        return shown
    if "used" in row and "limit" in row:
        return f"{number(row['used'], 2)} of {number(row['limit'], 2)}"
    return ""


def _worth(constraint: str, row: Mapping[str, Any], m: float, kpis: Mapping[str, Any],
           currency: str | None) -> str:
    """What one more unit of the row's limit would add, by the row's kind."""
    cur = f" {currency}" if currency else ""
    gain = f"about {significant(m)}{cur} of incremental margin"
    revenue = float(kpis.get("expected_offer_revenue") or 0.0)
    if constraint == "inventory":
        return f"One more unit of {row.get('item')} stock would add {gain}."
    if constraint == "promotion_budget":
        return (f"One more{cur or ' unit'} of promotion budget would add {gain} "
                f"({significant(1000 * m)}{cur} per 1,000{cur}).")
    if constraint in ("max_discounted_share", "min_aggregate_margin_rate", "max_avg_discount"):
        # These rows are sums over the offers' revenue (list value for the average discount),
        # so one percentage point of the limit frees about 1% of the plan's revenue in them.
        base, unit = revenue, "offer revenue"
        if constraint == "max_avg_discount":
            base, unit = revenue / max(1e-9, 1 - float(kpis.get("avg_discount") or 0.0)), \
                "list value"
        what = {"max_discounted_share": "Allowing one more percentage point of discounted share",
                "min_aggregate_margin_rate": "Lowering the aggregate margin floor by one "
                                             "percentage point",
                "max_avg_discount": "Allowing one more percentage point of average discount",
                }[constraint]
        return (f"{what} would add about {significant(m * 0.01 * base)}{cur} of incremental "
                f"margin ({significant(m)}{cur} per{cur or ' unit'} of {unit} the limit frees).")
    if constraint == "channel capacity":
        return f"One more impression of capacity in channel {row.get('channel')} would add {gain}."
    if constraint == "max_offers_per_customer":
        return (f"Allowing audience {row.get('audience')} one more offer per customer would add "
                f"{gain}.")
    if constraint == "max_repeats":
        return (f"Allowing {row.get('bundle')} in one more context of audience "
                f"{row.get('audience')} would add {gain}.")
    return f"One more unit of {row_name(constraint, row)} would add {gain}."
