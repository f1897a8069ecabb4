"""Each order system's published rate limit and what fulfil's work costs against it: the one table the audit's
capacity section and the live benchmark's bounds read (contracts/systems.md)."""

from __future__ import annotations

from dataclasses import dataclass

from resources.bigcommerce import STANDARD_QUOTA
from resources.cin7 import CALLS_PER_MINUTE as CIN7_PER_MINUTE
from resources.linnworks import METHOD_LIMITS
from resources.peoplevox import SOFT_LIMIT_PER_MINUTE
from resources.shopify import MAX_QUANTITIES

# SKUs per stock call each order system takes: BigCommerce 2,000 and Shopify 250 by their published specs;
# Linnworks and Cin7 Core publish no maximum (500 keeps a call well inside their timeouts).
STOCK_BATCH_MAXIMUM = {"bigcommerce": 2000, "shopify": MAX_QUANTITIES, "linnworks": 500, "cin7": 500}


@dataclass(frozen=True)
class SystemLimits:
    """An account's calls a minute (the whole account's, before `budget_share`), the calls one order costs
    beyond paged lists (read in detail; its tracking posted), and the rows a stock list page and a stock push
    carry; `one_limit`: reads and posts draw on one account-wide limit (Linnworks limits each method apart);
    `paid_only`: an order costs its calls once paid (an unpaid one is read in detail when payment changes it)."""

    calls_per_minute: float
    calls_per_order: float
    calls_per_post: float
    one_limit: bool
    paid_only: bool
    stock_page: int
    stock_batch: int
    note: str


LIMITS = {
    "linnworks": SystemLimits(
        METHOD_LIMITS["Orders/GetOpenOrders"],
        0.0,
        2.0,
        False,
        False,
        200,
        STOCK_BATCH_MAXIMUM["linnworks"],
        "per method: orders are read in pages with their lines; a tracking post sets shipping info, then processes",
    ),
    "cin7": SystemLimits(
        CIN7_PER_MINUTE,
        1.0,
        1.0,
        True,
        True,
        1000,
        STOCK_BATCH_MAXIMUM["cin7"],
        "one limit for the whole account: each authorised sale is read in detail, each parcel shipped by one call",
    ),
    "shopify": SystemLimits(
        120.0,
        1.0,
        1.0,
        True,
        True,
        250,
        STOCK_BATCH_MAXIMUM["shopify"],
        "a 40-call bucket leaking 2 a second (standard plan): each order's fulfillment orders are read once, and a "
        "parcel's fulfilment names them as read (a whole-order one reads them first: two calls); stock is set through "
        "GraphQL's own cost bucket",
    ),
    "bigcommerce": SystemLimits(
        STANDARD_QUOTA * 2,
        2.0,
        1.0,
        True,
        False,
        250,
        STOCK_BATCH_MAXIMUM["bigcommerce"],
        "150 requests per 30 s on a Standard plan: each order's lines and address are two calls",
    ),
    "peoplevox": SystemLimits(
        SOFT_LIMIT_PER_MINUTE, 0.0, 0.0, False, False, 1000, 100, "no published limit: a polite default"
    ),
}
