"""Linnworks as an effect target for tracking: `SetOrderShippingInfo` per despatch, `ProcessOrder` when complete."""

from __future__ import annotations

import json
from collections.abc import Iterator

import polars as pl

from fulfil_assets.effects import FAILED, PENDING, SENDING, SENT, Outcome
from resources.http import DataError, TransientError
from resources.linnworks import LinnworksClient

LOOKUP_CHUNK = 100


class LinnworksTracking:
    """Posts tracking and processes orders; before resending an unconfirmed attempt it reads the order back
    (`Orders/GetOrdersById`): the tracking number already on it, or the order already processed, confirms it."""

    def __init__(self, client: LinnworksClient) -> None:
        self.client = client
        self.unsettled: set[str] = set()  # orders with a post this run that may or may not have landed

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Rows whose effect the order in Linnworks already shows."""
        wanted = [(k, json.loads(p)) for k, p in rows.select("idempotency_key", "payload").iter_rows()]
        ids = sorted({p["order_id"] for _, p in wanted})
        seen: dict[str, dict] = {}
        for start in range(0, len(ids), LOOKUP_CHUNK):
            for order in self.client.orders_by_id(ids[start : start + LOOKUP_CHUNK]):
                seen[order.get("OrderId")] = order
        found = {}
        for key, p in wanted:
            order = seen.get(p["order_id"])
            if order is None:
                continue
            if p["kind"] == "process" and order.get("Processed"):
                found[key] = "order is processed"
            elif p["kind"] == "tracking" and (
                (order.get("ShippingInfo") or {}).get("TrackingNumber") == p["tracking_number"]
            ):
                found[key] = f"order shows tracking {p['tracking_number']}"
        return found

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """One call per row; a failure that may have been applied is left for `holds` to settle next time, and
        the order's other posts wait until it is (Linnworks shows only the latest tracking number)."""
        for key, raw in rows.select("idempotency_key", "payload").iter_rows():
            p = json.loads(raw)
            if p["order_id"] in self.unsettled:
                yield [key], Outcome(PENDING, error="waits until an earlier post to this order is settled")
                continue
            try:
                if p["kind"] == "tracking":
                    self.client.set_shipping_info(p["order_id"], p["tracking_number"])
                    result = f"tracking {p['tracking_number']}"
                else:
                    answer = self.client.process_order(p["order_id"])
                    if not answer.get("Processed") and "already processed" not in str(answer.get("Error") or ""):
                        raise DataError("Linnworks", "Orders/ProcessOrder", str(answer.get("Error")))
                    result = "processed"
            except TransientError as exc:
                if exc.maybe_applied:
                    self.unsettled.add(p["order_id"])
                yield [key], Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
                continue
            except DataError as exc:
                yield [key], Outcome(FAILED, error=str(exc))
                continue
            yield [key], Outcome(SENT, result=result)
