"""`offeropt` commands for basket mining: mine (rules, itemsets, cross-sell bundles), baskets."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cli.args import non_negative_int, positive_int
from cli.exit_codes import ExitCode
from optimizer.errors import InputError, Issue


def register(sub: Any) -> None:
    """mine, baskets."""
    m = sub.add_parser("mine", help="frequent itemsets and association rules of order lines; "
                       "optionally cross-sell bundles for a catalog",
                       description="Mine order lines (one row per order and item) for frequent "
                       "itemsets and rules A -> C with support, confidence, lift, leverage and "
                       "conviction (docs/mining.md).")
    m.add_argument("transactions", help="order lines, CSV or Parquet")
    m.add_argument("--min-support", type=float, default=0.01, metavar="S",
                   help="in (0, 1]: the share of orders an itemset must be in (default 0.01)")
    m.add_argument("--min-confidence", type=float, default=0.1, metavar="C",
                   help="in (0, 1]: of a rule (default 0.1)")
    m.add_argument("--min-lift", type=float, default=1.0, metavar="L",
                   help=">= 0: of a rule (default 1)")
    m.add_argument("--max-size", type=int, default=4, metavar="K",
                   help="items per itemset, 1 to 10 (default 4)")
    m.add_argument("-o", "--output", help="the rules, .csv or .parquet")
    m.add_argument("--itemsets", metavar="PATH", help="the frequent itemsets, .csv or .parquet")
    m.add_argument("--format", choices=("csv", "parquet"),
                   help="of TRANSACTIONS (default: from its extension)")
    m.add_argument("--order-column", default="order_id")
    m.add_argument("--item-column", default="item_id")
    m.add_argument("--customer-column", help="(default: customer_id, when the file has it)")
    m.add_argument("--date-column", help="(default: date, when the file has it)")
    m.add_argument("--date-format", help="strftime format of the dates, e.g. %%Y%%m%%d")
    m.add_argument("--since", metavar="DATE", help="mine orders of this day or later")
    m.add_argument("--until", metavar="DATE", help="mine orders of this day or earlier")
    m.add_argument("--top", type=non_negative_int, default=10, metavar="N",
                   help="rules shown in the summary (default 10)")
    m.add_argument("--json", action="store_true", help="print the summary as JSON")
    b = m.add_argument_group("cross-sell bundles")
    b.add_argument("--write-bundles", metavar="CATALOG",
                   help="add the strongest rules as cross-sell bundles to this instance")
    b.add_argument("--output-catalog", metavar="PATH",
                   help="where the new instance goes: a .json file, or a folder for CSV")
    b.add_argument("--segments", metavar="ASSIGNMENTS", help="customer -> RFM segment, as "
                   "`offeropt segment --assignments` writes: adds responses per segment")
    b.add_argument("--bundles", type=int, default=20, metavar="N", help="at most (default 20)")
    b.add_argument("--bundle-items", type=int, default=2, metavar="K",
                   help="items per bundle, the anchor included (default 2)")
    b.add_argument("--prior-orders", type=float, default=10.0, metavar="K",
                   help="pseudo-orders shrinking a segment's confidence toward the rule's "
                   "(default 10)")
    b.add_argument("--baseline-share", type=float, default=0.0, metavar="F",
                   help="baseline_rate = F * take_rate (default 0)")
    b.add_argument("--add-segments", action="store_true",
                   help="add RFM segments no instance segment names, views = their orders")
    m.set_defaults(run=_mine)

    g = sub.add_parser("baskets", help="a seeded order-lines log with planted co-purchases")
    g.add_argument("--orders", type=positive_int, required=True, metavar="N")
    g.add_argument("--seed", type=non_negative_int, default=0, metavar="K")
    g.add_argument("--catalog", metavar="INSTANCE", help="use its items and prices")
    g.add_argument("--items", type=positive_int, default=200, metavar="I",
                   help="without --catalog (default 200)")
    g.add_argument("--planted", type=non_negative_int, default=8, metavar="P",
                   help="planted rules (default 8; every third plants a triple)")
    g.add_argument("--strength", type=float, default=0.6, metavar="Q",
                   help="the chance a partner joins an order holding its anchor (default 0.6)")
    g.add_argument("--mean-size", type=float, default=3.0, metavar="M",
                   help="mean lines per order before planting (default 3)")
    g.add_argument("--customers", type=positive_int, metavar="C", help="(default: orders / 5)")
    g.add_argument("--days", type=positive_int, default=365, metavar="D")
    g.add_argument("-o", "--output", required=True, help="order lines, .csv or .parquet")
    g.add_argument("--per-order", metavar="FILE", help="one row per order (order_id, "
                   "customer_id, date, amount), the log `offeropt segment` scores")
    g.set_defaults(run=_baskets)


def _usage(command: str, message: str) -> int:
    print(f"offeropt {command}: error: {message}", file=sys.stderr)  # as argparse reports it
    return ExitCode.USAGE


def _mine(args: argparse.Namespace) -> int:
    from optimizer.mining.lines import LineColumns, read_order_lines
    from optimizer.mining.mine import Thresholds, mine

    if bool(args.write_bundles) != bool(args.output_catalog):
        return _usage("mine", "--write-bundles CATALOG and --output-catalog PATH go together")
    if (args.segments or args.add_segments) and not args.write_bundles:
        return _usage("mine", "--segments and --add-segments need --write-bundles CATALOG")
    if args.add_segments and not args.segments:
        return _usage("mine", "--add-segments needs --segments ASSIGNMENTS")
    thresholds = Thresholds(args.min_support, args.min_confidence, args.min_lift, args.max_size)
    catalog = assignments = None
    if args.write_bundles:
        from optimizer.mining.bundles import BundleOptions, read_assignments

        options = BundleOptions(args.bundles, args.bundle_items, args.prior_orders,
                                args.baseline_share, args.add_segments)
        if _same_path(args.write_bundles, args.output_catalog):
            raise InputError([Issue("--output-catalog", "must differ from the catalog read "
                                    "(--write-bundles), which is never overwritten",
                                    args.output_catalog)])
    # every output refused now, not after the reading and the mining
    _outputs({"-o": args.output, "--itemsets": args.itemsets,
              "--output-catalog": args.output_catalog},
             {"TRANSACTIONS": args.transactions, "--segments": args.segments,
              "--write-bundles": args.write_bundles})
    if args.output_catalog and Path(args.output_catalog).suffix.lower() != ".json":
        _folder_writable(Path(args.output_catalog))
    if args.write_bundles:
        from cli.solving import load

        catalog = load(args.write_bundles)
        if args.segments:
            assignments = read_assignments(args.segments)

    started = time.perf_counter()
    columns = LineColumns(args.order_column, args.item_column, args.customer_column,
                          args.date_column, args.date_format)
    baskets = read_order_lines(args.transactions, columns, args.format, args.since, args.until)
    read_seconds = time.perf_counter() - started
    mined = mine(baskets, thresholds)
    rules = mined.rules_frame()
    summary: dict[str, Any] = {
        "transactions": str(args.transactions), "orders": baskets.n_orders,
        "items": baskets.n_items, "lines": baskets.lines, "duplicates": baskets.duplicates,
        "min_orders": mined.min_orders, "itemsets": len(mined.itemsets), "rules": len(rules),
        "itemsets_by_size": {int(k): int(v) for k, v in
                             zip(*_sizes(mined.itemsets.size), strict=True)},
        "seconds": {"read": round(read_seconds, 3), "mine": round(mined.seconds, 3)},
        "top_rules": _records(rules.head(args.top)),
    }
    from optimizer.io.tables import write_frame

    if args.output:
        write_frame(Path(args.output), rules)
    if args.itemsets:
        write_frame(Path(args.itemsets), mined.itemsets_frame())
    result = None
    if catalog is not None:
        from optimizer.io import write_instance
        from optimizer.mining.bundles import write_bundles

        result = write_bundles(catalog, mined, options, assignments)
        path = Path(args.output_catalog)
        write_instance(result.instance, path)
        summary["bundles"] = {
            "catalog": str(args.write_bundles), "output_catalog": str(path),
            "added": _records(result.bundles.drop(columns=["items"])),
            "exclusion_groups": int(result.bundles["exclusion_group"].nunique()),
            "candidates": result.candidates, "skipped_not_in_catalog": result.skipped,
            "missing_items": list(result.missing_items[:20]),
            "responses": len(result.responses),
            "segments": sorted(set(result.responses["segment"])),
            "segments_added": list(result.segments_added),
            "segments_unmatched": list(result.segments_unmatched),
            "orders_unsegmented": result.orders_unsegmented,
        }
    summary["seconds"]["total"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(summary, indent=2, default=_json_default))
    else:
        _print_summary(args, summary, result)
    return ExitCode.OK


def _same_path(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _outputs(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Output files that can be written (`writable`: a folder is made if missing), none
    naming an input or another output. A CSV folder for `--output-catalog` is checked by
    `_folder_writable`."""
    from cli.solving import writable

    given = {flag: path for flag, path in outputs.items() if path}
    issues = []
    for i, (flag, path) in enumerate(given.items()):
        for other, seen in [*list(given.items())[:i], *inputs.items()]:
            if seen and _same_path(path, seen):
                issues.append(Issue(flag, f"must differ from {other} ({seen})", path))
                break
    if issues:
        raise InputError(issues)
    for flag, path in given.items():
        if flag != "--output-catalog" or Path(path).suffix.lower() == ".json":
            writable(Path(path))


def _folder_writable(folder: Path) -> None:
    """A folder that the instance's CSV tables can be written into (made if missing)."""
    from cli.solving import writable

    if folder.exists() and not folder.is_dir():
        raise InputError([Issue(str(folder), "must be a folder (or a new path) to write CSV "
                                "tables into", value_text="an existing file")])
    writable(folder / "items.csv")


def _sizes(size: Any) -> tuple[Any, Any]:
    import numpy as np

    values, counts = np.unique(size, return_counts=True)
    return values, counts


def _records(frame: Any) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return value


def _json_default(value: Any) -> Any:
    return _plain(value) if hasattr(value, "item") else str(value)


def _print_summary(args: argparse.Namespace, s: dict[str, Any], result: Any) -> None:
    dup = f" ({s['duplicates']:,} repeated items collapsed)" if s["duplicates"] else ""
    print(f"{Path(s['transactions']).name}: {s['orders']:,} orders, {s['items']:,} items, "
          f"{s['lines']:,} order lines{dup}")
    sizes = ", ".join(f"{k}: {v:,}" for k, v in s["itemsets_by_size"].items())
    t = s["seconds"]
    print(f"mined {s['itemsets']:,} frequent itemsets (support >= {args.min_support:g}, "
          f"{s['min_orders']:,} orders; by size {sizes or 'none'}) and {s['rules']:,} rules "
          f"(confidence >= {args.min_confidence:g}, lift >= {args.min_lift:g}) in "
          f"{t['mine']:.2f} s (reading {t['read']:.2f} s)")
    if s["top_rules"]:
        print("strongest rules (by lift):")
    for i, r in enumerate(s["top_rules"], 1):
        ante = " + ".join(r["antecedents"].split(";"))
        cons = " + ".join(r["consequents"].split(";"))
        print(f"  {i}. orders with {ante} also hold {cons} in {r['confidence']:.1%} of cases "
              f"({r['orders']:,} of {r['antecedent_orders']:,} orders; lift {r['lift']:.2f}, "
              f"support {r['support']:.2%})")
    written = [f"{args.output} ({s['rules']:,} rules)"] if args.output else []
    written += [f"{args.itemsets} ({s['itemsets']:,} itemsets)"] if args.itemsets else []
    if written:
        print("wrote " + ", ".join(written))
    if result is None:
        return
    b = s["bundles"]
    groups = b["exclusion_groups"]
    print(f"{b['catalog']}: added {len(b['added'])} cross-sell bundles priced at the sum of "
          f"their items' catalog prices, {groups} exclusion group{'s' * (groups != 1)} of "
          "bundles sharing an anchor item")
    for row in b["added"][:args.top or 0]:
        print(f"  {row['id']}: reference price {row['reference_price']:,.2f}"
              + (f", group {row['exclusion_group']}" if row["exclusion_group"] else "")
              + f" (lift {row['lift']:.2f}, confidence {row['confidence']:.1%})")
    if b["skipped_not_in_catalog"]:
        print(f"skipped {b['skipped_not_in_catalog']:,} of {b['candidates']:,} itemsets naming "
              "items not in the catalog (e.g. " + ", ".join(map(repr, b["missing_items"][:5]))
              + ")")
    if args.segments:
        added = (f" ({len(b['segments_added'])} added: {', '.join(b['segments_added'][:8])}"
                 + ("..." if len(b["segments_added"]) > 8 else "") + ")") if b["segments_added"] else ""
        print(f"{b['responses']:,} responses in {len(b['segments'])} segments{added}, take "
              "rates from each segment's confidence")
        if b["segments_unmatched"]:
            print(f"{len(b['segments_unmatched'])} RFM segments match no segment of the catalog "
                  f"(--add-segments adds them): {', '.join(b['segments_unmatched'][:8])}")
        if b["orders_unsegmented"]:
            print(f"{b['orders_unsegmented']:,} orders of customers without a segment")
    else:
        print("no responses: the bundles are offered once responses are estimated or given "
              "(--segments adds take-rate priors per RFM segment)")
    print(f"wrote {b['output_catalog']}")


def _baskets(args: argparse.Namespace) -> int:
    from optimizer.io.tables import write_frame
    from optimizer.mining.generate import check_options, generate_baskets

    check_options(args.orders, args.items, args.planted, args.strength, args.mean_size,
                  args.customers, args.days)
    _outputs({"-o": args.output, "--per-order": args.per_order}, {"--catalog": args.catalog})
    items: Any = args.items
    prices = None
    if args.catalog:
        from cli.solving import load

        inst = load(args.catalog)
        items = [str(i) for i in inst.items["id"]]
        prices = inst.items["price"].to_numpy(dtype=float)
    log = generate_baskets(args.orders, args.seed, items, prices, args.planted, args.strength,
                           args.mean_size, args.customers, args.days)
    write_frame(Path(args.output), log.lines)
    if args.per_order:
        write_frame(Path(args.per_order), log.orders())
    print(f"wrote {args.output}: {len(log.lines):,} order lines of {args.orders:,} orders by "
          f"{log.lines['customer_id'].nunique():,} customers"
          + (f", and {args.per_order}" if args.per_order else ""))
    for rule in log.planted:
        print(f"  planted {rule.anchor} -> {' + '.join(rule.partners)} (strength {rule.strength:g})")
    return ExitCode.OK
