"""A record saved with a modification stamp older than the cursor, and visible only afterwards (a slow commit, a
replica behind), is still read: each modified-since cursor looks back, and what the lookback lists again unchanged
costs no second detail call. Counted at the emulators: the records they hold and the detail calls they answered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from emulators.core import Call
from emulators.server import Emulators
from fulfil_assets.ingest.bigcommerce_source import bigcommerce_source
from fulfil_assets.ingest.cin7_source import cin7_source
from fulfil_assets.ingest.cursors import LOOKBACK_S
from fulfil_assets.ingest.shopify_source import shopify_source
from resources.bigcommerce import BigCommerceClient
from resources.cin7 import Cin7Client
from resources.shopify import ShopifyClient
from resources.warehouse import WarehouseDb


def source_of(emu: Emulators, system: str) -> Any:
    """The system's order resources and their detail fan-out, through fulfil's own client."""
    if system == "cin7":
        client = Cin7Client(emu.url("cin7"), *emu.cin7.credentials, budget_share=1.0)
        return cin7_source(client).with_resources("sale_list", "sales")
    if system == "bigcommerce":
        bc = BigCommerceClient(emu.url("bigcommerce"), emu.bigcommerce.access_token, budget_share=1.0)
        return bigcommerce_source(bc).with_resources("orders", "order_products", "order_shipping_addresses")
    shop = ShopifyClient(emu.url("shopify"), emu.shopify.access_token, budget_share=1.0)
    return shopify_source(shop).with_resources("orders", "fulfillment_orders")


ORDER_TABLE = {"cin7": "raw_cin7.sale_list", "bigcommerce": "raw_bigcommerce.orders", "shopify": "raw_shopify.orders"}
ORDER_ID = {"cin7": "sale_id", "bigcommerce": "id", "shopify": "id"}


def detail_of(system: str, call: Call) -> str | None:
    """The record a per-record detail call was about (None for any other call)."""
    if system == "cin7" and call.path.endswith("/sale") and "ID=" in call.query:
        return call.query.split("ID=", 1)[1].split("&", 1)[0]
    if system == "bigcommerce" and "/v2/orders/" in call.path and not call.path.endswith("/shipments"):
        return call.path.split("/v2/orders/", 1)[1].split("/", 1)[0]
    if system == "shopify" and call.path.endswith("/fulfillment_orders.json"):
        return call.path.split("/orders/", 1)[1].split("/", 1)[0]
    return None


@pytest.mark.parametrize("system", ["bigcommerce", "cin7", "shopify"])
def test_a_record_stamped_before_the_cursor_is_read_and_nothing_else_is_read_twice(
    emulators: Emulators, tmp_path: Path, system: str
) -> None:
    emu = emulators
    store = getattr(emu, system)
    records = store.sales if system == "cin7" else store.orders
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    pipeline = dlt.pipeline(
        pipeline_name=f"late_{system}",
        dataset_name=f"raw_{system}",
        destination=db.dlt_destination(),
        pipelines_dir=str(tmp_path / "dlt"),
    )
    held = f"SELECT CAST({ORDER_ID[system]} AS TEXT) AS id FROM {ORDER_TABLE[system]}"
    pipeline.run(source_of(emu, system))
    first = set(db.read(held)["id"])
    assert first == {str(k) for k in records}

    # A record saved now, stamped before the newest stamp already read (inside the lookback), shows up late.
    at = max(r.updated_at for r in records.values()) - timedelta(seconds=LOOKBACK_S / 3)
    late = str(store.spawn(1, at, at)[0])
    store.recorder.clear()
    pipeline.run(source_of(emu, system))

    assert set(db.read(held)["id"]) == first | {late}, "the late record was never read"
    detailed = {d for c in store.recorder.calls if (d := detail_of(system, c)) is not None}
    needs_detail = system != "shopify" or records[int(late)].paid  # Shopify: fulfillment orders of paid orders
    assert detailed == ({late} if needs_detail else set()), "a record listed again unchanged was read again"


def test_a_deployment_on_the_earlier_cin7_cursor_goes_on_from_where_it_got_to() -> None:
    """Cin7's cursor moved from `Updated` (zone-less) to `_updated_at` (explicit UTC, which dlt's lookback can step
    back from): a deployment with only the earlier position lists from there, less the lookback, not from 2000."""
    from fulfil_assets.ingest.cin7_source import EPOCH, updated_since

    assert updated_since(EPOCH, None) == "2000-01-01T00:00:00"
    back = (datetime(2026, 12, 6, 18, 43, 47, tzinfo=UTC) - timedelta(seconds=LOOKBACK_S)).strftime("%Y-%m-%dT%H:%M:%S")
    assert updated_since(EPOCH, "2026-12-06T18:43:47.123") == back
    assert updated_since("2026-12-06T19:00:00+00:00", "2026-12-06T18:43:47.123") == "2026-12-06T19:00:00"
