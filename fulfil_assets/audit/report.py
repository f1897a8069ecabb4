"""The audit as people read it: one self-contained HTML page (tables and inline SVG bar charts, nothing fetched
from anywhere), the same as JSON for tools, and a markdown summary for the asset's page in the Dagster UI."""

from __future__ import annotations

import html
import json
from typing import Any

import polars as pl

from fulfil_assets.audit.findings import PROBLEMS
from fulfil_assets.audit.read import Audit

ROWS_SHOWN = 50  # per table on the page; the JSON holds every row
# Each section's heading and what it tells the brand, in page order.
HEADINGS = {
    "catalogue": ("Catalogue", "SKUs that would hold orders back, or that nobody sells, per flow and system."),
    "shipping_methods": (
        "Shipping methods",
        "What customers chose in the period, by volume, and the warehouse service each maps to. Unmapped ones are "
        "held as SERVICE_UNMAPPED, never sent with a guess.",
    ),
    "services_unmapped": (
        "Linnworks postal services without a Peoplevox carrier service",
        "Orders placed with these would be held for the linnworks_peoplevox flow.",
    ),
    "locations_unmapped": (
        "Order-system locations without a stock location",
        "fulfil never sets the stock shown at these (stock_locations.csv maps none to them).",
    ),
    "rule_failures": (
        "Orders against each rule",
        "The share of the period's orders each rule would hold back, with examples and who fixes them.",
    ),
    "held_orders": ("Orders a rule would hold", "Each order and reason, with who fixes it."),
    "stale_orders": ("Orders open too long", "Still open in their order system past the stale threshold."),
    "open_but_despatched": (
        "Despatched but still open",
        "The warehouse despatched these; their order system still shows them open (the customer has no tracking).",
    ),
    "stock_truth": (
        "Stock truth",
        "Per SKU and location, what each order system shows beside what may be sold from the warehouse now "
        "(warehouse available, less open orders not yet there, less the buffer). `at_risk`: units it would oversell.",
    ),
    "negative_stock": ("Negative warehouse stock", "SKUs the warehouse shows below zero (oversold there)."),
    "capacity": (
        "Capacity",
        "Each order system's measured volume against its published limit and the configured budget_share: the "
        "fastest safe interval for the order and stock syncs, and a peak day's calls (ten times today's orders).",
    ),
}


def headline(audit: Audit) -> dict[str, Any]:
    """The figures a reader looks at first."""
    s = audit.sections
    catalogue = s["catalogue"]
    shipping = s["shipping_methods"]
    stock = s["stock_truth"]
    return {
        "orders_checked": audit.orders_checked,
        "catalogue_problems": dict(catalogue.group_by("problem").len().sort("problem").iter_rows()),
        "orders_held_by_rule": s["held_orders"].select("flow", "order_ref").unique().height,
        "unmapped_shipping_orders": int(shipping.filter(~pl.col("mapped"))["orders"].sum() or 0),
        "units_at_risk_of_overselling": int(stock["at_risk"].sum() or 0) if stock.height else 0,
        "skus_at_risk": int((stock["at_risk"] > 0).sum()) if stock.height else 0,
        "negative_stock_skus": s["negative_stock"].height,
        "stale_orders": s["stale_orders"].height,
        "despatched_but_open": s["open_but_despatched"].height,
    }


def _plain(value: Any) -> Any:
    """A cell as JSON can hold it."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def as_json(audit: Audit) -> str:
    """Every row of every section, with the period and the headline figures."""
    body = {
        "generated_at": audit.generated_at.isoformat(),
        "days": audit.days,
        "stale_days": audit.stale_days,
        "flows": audit.flows,
        "headline": headline(audit),
        "sections": {
            name: [{k: _plain(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
            for name, frame in audit.sections.items()
        },
    }
    return json.dumps(body, indent=2)


def _short(label: str, most: int = 44) -> str:
    """A chart label that fits beside its bar: the start and the end of a long one."""
    return label if len(label) <= most else f"{label[: most // 2 - 1]}...{label[-(most // 2 - 2) :]}"


def bars(labels: list[str], values: list[float], unit: str = "", width: int = 720) -> str:
    """A horizontal bar chart as inline SVG (one bar per label, the value written beside it)."""
    if not values:
        return ""
    top = max(max(values), 1e-9)
    row, label_w, bar_w = 22, 330, width - 330 - 90
    parts = [f'<svg width="{width}" height="{row * len(values) + 6}" role="img" class="chart">']
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = i * row + 3
        length = max(1.0, bar_w * value / top) if value else 0.0
        shown = f"{value:.1%}" if unit == "%" else f"{value:,.0f}{unit}"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{html.escape(_short(label))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" rx="2"></rect>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + 15}">{shown}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def table(frame: pl.DataFrame, limit: int = ROWS_SHOWN) -> str:
    """The first `limit` rows as an HTML table (and how many more the JSON holds)."""
    if frame.is_empty():
        return '<p class="none">Nothing found.</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(_plain(v)))}</td>" for v in r) + "</tr>"
        for r in frame.head(limit).iter_rows()
    )
    more = f'<p class="more">... and {frame.height - limit} more (all in the JSON).</p>' if frame.height > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{more}"


def _chart(name: str, frame: pl.DataFrame) -> str:
    """The section's chart, where a picture says more than the table."""
    if frame.is_empty():
        return ""
    if name == "catalogue":
        counts = frame.group_by("problem").len().sort("len", descending=True)
        return bars([PROBLEMS[p][0] for p in counts["problem"]], counts["len"].to_list())
    if name == "shipping_methods":
        top = frame.head(15)
        labels = [
            f"{f}: {m} ({'mapped' if ok else 'UNMAPPED'})"
            for f, m, ok in top.select("flow", "shipping_method", "mapped").iter_rows()
        ]
        return bars(labels, top["orders"].to_list(), " orders")
    if name == "rule_failures":
        return bars(
            [f"{f}: {r}" for f, r in frame.select("flow", "reason_code").iter_rows()], frame["share"].to_list(), "%"
        )
    if name == "stock_truth":
        risky = frame.filter(pl.col("at_risk") > 0).head(15)
        return bars(
            [f"{f}: {s} @ {loc}" for f, s, loc in risky.select("flow", "sku", "location").iter_rows()],
            risky["at_risk"].to_list(),
            " units",
        )
    return ""


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2433;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #d6dbe4;padding-bottom:.3rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{border:1px solid #d6dbe4;border-radius:6px;padding:.6rem .9rem;min-width:10rem}
.card b{display:block;font-size:1.4rem}table{border-collapse:collapse;width:100%;font-size:12.5px;margin-top:.6rem}
th,td{border-bottom:1px solid #e6e9ef;padding:.25rem .4rem;text-align:left;vertical-align:top}th{background:#f4f6fa}
.chart rect{fill:#3c6fd1}.chart text{font-size:12px;fill:#1d2433}.none{color:#4b8a3c}.more,.note{color:#5b6475}
"""


def as_html(audit: Audit) -> str:
    """The whole report as one page that needs nothing else."""
    figures = headline(audit)
    catalogue = sum(figures["catalogue_problems"].values())
    cards = [
        ("orders checked", figures["orders_checked"]),
        ("catalogue problems", catalogue),
        ("orders held by a rule", figures["orders_held_by_rule"]),
        ("orders with an unmapped service", figures["unmapped_shipping_orders"]),
        ("units at risk of overselling", figures["units_at_risk_of_overselling"]),
        ("despatched but open", figures["despatched_but_open"]),
    ]
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>fulfil audit</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>fulfil system audit</h1>",
        f'<p class="note">Generated {audit.generated_at:%Y-%m-%d %H:%M} UTC over the orders of the last '
        f"{audit.days:g} days; flows: {', '.join(audit.flows)}. Read-only: nothing was sent to any system.</p>",
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{v:,}</b>{html.escape(k)}</div>' for k, v in cards)
        + "</div>",
    ]
    for name, frame in audit.sections.items():
        title, blurb = HEADINGS[name]
        out += [
            f'<h2 id="{name}">{html.escape(title)}</h2>',
            f"<p>{html.escape(blurb)}</p>",
            _chart(name, frame),
            table(frame),
        ]
    out.append("</body></html>")
    return "\n".join(out)


def as_markdown(audit: Audit) -> str:
    """The headline and the worst of each section, for the asset's page in the UI."""
    figures = headline(audit)
    out = [f"**{figures['orders_checked']} orders checked** over the last {audit.days:g} days.", ""]
    out += ["| finding | count |", "|---|---|"]
    out += [f"| {PROBLEMS[p][0]} | {n} |" for p, n in figures["catalogue_problems"].items()]
    for key in (
        "orders_held_by_rule",
        "unmapped_shipping_orders",
        "units_at_risk_of_overselling",
        "negative_stock_skus",
    ):
        out.append(f"| {key.replace('_', ' ')} | {figures[key]} |")
    rules = audit.sections["rule_failures"].head(10)
    if rules.height:
        out += ["", "| flow | reason | owner | failing | share |", "|---|---|---|---|---|"]
        out += [
            f"| {r['flow']} | {r['reason_code']} | {r['owner']} | {r['failing']} | {r['share']:.1%} |"
            for r in rules.iter_rows(named=True)
        ]
    return "\n".join(out)
