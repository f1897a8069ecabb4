"""Which flow each order belongs to: exactly one, so that it reaches one target once.

An order belongs to the configured flow whose order system it came from. Where one order system feeds several
flows (Linnworks -> Whistl and Linnworks -> Peoplevox), `routes.<flow>.locations` in fulfil.yaml names the
fulfilment locations each flow takes; the one flow without routes takes the rest.
"""

from __future__ import annotations

import polars as pl

from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, target_of

ROUTE_SCHEMA = {"order_key": pl.String, "flow": pl.String, "target": pl.String}


def order_routes(orders: pl.DataFrame, config: FulfilConfig) -> pl.DataFrame:
    """`order_key, flow, target` for every order some configured flow takes (orders of a system that feeds no
    flow, or at a location no flow takes, are nobody's to send)."""
    parts = []
    for flow in config.flows:
        oms = FLOW_SYSTEMS[flow][0]
        siblings = [f for f in config.flows if FLOW_SYSTEMS[f][0] == oms and f != flow]
        mine = pl.col("source_system") == oms
        if flow in config.routes:
            mine = mine & pl.col("fulfilment_location").is_in(config.routes[flow].locations)
        elif siblings:  # the unrouted flow takes what its routed siblings do not
            taken = [loc for f in siblings if f in config.routes for loc in config.routes[f].locations]
            mine = mine & ~pl.col("fulfilment_location").fill_null("").is_in(taken)
        parts.append(
            orders.filter(mine).select("order_key", pl.lit(flow).alias("flow"), pl.lit(target_of(flow)).alias("target"))
        )
    if not parts:
        return pl.DataFrame(schema=ROUTE_SCHEMA)
    return pl.concat(parts).cast(ROUTE_SCHEMA)  # type: ignore[arg-type]


def targets(config: FulfilConfig) -> list[str]:
    """The systems the configured flows send orders to, in flow order."""
    return list(dict.fromkeys(target_of(f) for f in config.flows))
