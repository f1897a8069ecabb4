"""Synthetic workloads over the emulated world for benchmarks and drills: orders as fulfil's senders read them
(validated, ready, with their lines), in numbers no seeded world holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

from emulators.linnworks import WHISTL_LOCATION

if TYPE_CHECKING:
    from emulators.server import Emulators

SERVICE = {"whistl": "WHISTL-T48", "peoplevox": "Royal Mail Tracked 48", "linnworks": "Standard Delivery"}


def ready_orders(emu: Emulators, n: int, flow: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`n` validated, ready orders (2 lines each, SKUs the warehouses know) as the senders read them."""
    skus = emu.world.wms_catalogue
    now = datetime.now(UTC)
    orders = pl.DataFrame(
        {
            "order_key": [f"bench:{i}" for i in range(n)],
            "order_ref": [f"B{i:07d}" for i in range(n)],
            "source_order_id": [str(i) for i in range(n)],
            "flow": [flow] * n,
            "ship_name": ["Ann Smith"] * n,
            "company": [""] * n,
            "address1": [f"{i % 300 + 1} High Street" for i in range(n)],
            "address2": [""] * n,
            "address3": [""] * n,
            "city": ["Leeds"] * n,
            "region": ["West Yorkshire"] * n,
            "postcode_normalised": ["LS1 4AP"] * n,
            "country_code": ["GB"] * n,
            "phone_normalised": ["07911123456"] * n,
            "email": ["ann@example.co.uk"] * n,
            "created_at": [now] * n,
            "total": [24.0] * n,
            "currency": ["GBP"] * n,
            "channel": ["Web"] * n,
            "service_code": [SERVICE[flow.rsplit("_", 1)[1]]] * n,
            "target_location": [WHISTL_LOCATION] * n,
        }
    )
    lines = pl.DataFrame(
        {
            "order_key": [f"bench:{i}" for i in range(n) for _ in (1, 2)],
            "line_no": [j for _ in range(n) for j in (1, 2)],
            "sku": [skus[(i * 2 + j) % len(skus)] for i in range(n) for j in (0, 1)],
            "quantity": [1, 2] * n,
            "unit_price": [12.0, 6.0] * n,
        }
    )
    return orders, lines
