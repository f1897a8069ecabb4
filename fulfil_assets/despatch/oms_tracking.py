"""The order systems as effect targets for tracking: Linnworks, Cin7 Core, BigCommerce and Shopify.

Each sender makes one call per ledger row and, before an unconfirmed attempt is sent again, reads the order
back: what the order already shows (the tracking number on a shipment, an authorised shipment, a fulfilment)
confirms the attempt instead of repeating it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import polars as pl

from fulfil_assets.effects import FAILED, NOT_STARTED, PENDING, SENDING, SENT, TOO_LATE, Outcome
from resources.bigcommerce import BigCommerceClient
from resources.cin7 import AUTHORISED, DRAFT, Cin7Client
from resources.http import DataError, TransientError
from resources.linnworks import LinnworksClient
from resources.shopify import ShopifyClient

OPEN_FULFILMENT_ORDERS = ("open", "in_progress", "scheduled")
LINNWORKS_LOOKUP_CHUNK = 100
POSTS_PER_BATCH = 25  # recorded together; the warehouse is let go while the order system answers them


class OmsTracking:
    """One call per row, with the outcome the effect module needs: a failure that may have been applied is left
    `sending` for `holds` to settle next time; a refusal is `failed` with the system's words."""

    def __init__(self) -> None:
        self.unsettled: set[str] = set()  # orders with a post this run that may or may not have landed
        self.until: float | None = None  # a `time.monotonic()` instant after which no post starts (a despatch run's)

    def batches(self, rows: pl.DataFrame) -> Iterable[pl.DataFrame]:
        """Posts a batch at a time: each batch's attempts and outcomes are recorded together."""
        return (rows.slice(i, POSTS_PER_BATCH) for i in range(0, rows.height, POSTS_PER_BATCH))

    def held(self, order_id: str, payload: dict[str, Any]) -> str | None:
        """Evidence that the order already shows the post, or None."""
        raise NotImplementedError

    def post(self, payload: dict[str, Any]) -> Outcome:
        """Make the post; the outcome when the system answered."""
        raise NotImplementedError

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Rows whose effect the order already shows (one read per order)."""
        found: dict[str, str] = {}
        for key, raw in rows.select("idempotency_key", "payload").iter_rows():
            p = json.loads(raw)
            evidence = self.held(p["order_id"], p)
            if evidence:
                found[key] = evidence
        return found

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Post each row; an order's later posts wait while an earlier one's outcome is unknown, and none starts
        after `until`."""
        for key, raw in rows.select("idempotency_key", "payload").iter_rows():
            if self.until is not None and time.monotonic() >= self.until:
                yield [key], NOT_STARTED
                continue
            p = json.loads(raw)
            if p["order_id"] in self.unsettled:
                yield [key], Outcome(PENDING, error="waits until an earlier post to this order is settled")
                continue
            try:
                outcome = self.post(p)
            except TransientError as exc:
                if exc.maybe_applied:
                    self.unsettled.add(p["order_id"])
                outcome = Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
            except DataError as exc:
                outcome = Outcome(FAILED, error=str(exc))
            yield [key], outcome


class LinnworksTracking(OmsTracking):
    """Linnworks: `SetOrderShippingInfo` per despatch, `ProcessOrder` once complete. Linnworks shows only an
    order's latest tracking number, so an order's later posts wait while an earlier one is unsettled."""

    def __init__(self, client: LinnworksClient) -> None:
        super().__init__()
        self.client = client

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Rows whose effect the order in Linnworks already shows (`Orders/GetOrdersById`, 100 orders a call).
        Linnworks keeps one tracking number per order: when a crash left several posts of one order unsettled and
        the order shows a later one's number, the earlier ones are superseded (sending them now would put an older
        number in front of the customer)."""
        ordered = rows.sort("created_at", "idempotency_key") if "created_at" in rows.columns else rows
        wanted = [(k, json.loads(p)) for k, p in ordered.select("idempotency_key", "payload").iter_rows()]
        ids = sorted({p["order_id"] for _, p in wanted})
        seen: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), LINNWORKS_LOOKUP_CHUNK):
            for order in self.client.orders_by_id(ids[start : start + LINNWORKS_LOOKUP_CHUNK]):
                seen[order.get("OrderId")] = order
        by_order: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for key, p in wanted:
            by_order.setdefault(p["order_id"], []).append((key, p))
        found = {}
        for order_id, posts in by_order.items():
            order = seen.get(order_id)
            if order is None:
                continue
            tracking = [(k, p["tracking_number"]) for k, p in posts if p["kind"] == "tracking"]
            shown = (order.get("ShippingInfo") or {}).get("TrackingNumber")
            numbers = [number for _, number in tracking]
            if shown in numbers:
                latest = len(numbers) - 1 - numbers[::-1].index(shown)
                for i, (key, _) in enumerate(tracking[: latest + 1]):
                    found[key] = f"order shows tracking {shown}" + (
                        "" if i == latest else ", a later despatch's (Linnworks keeps one number): superseded"
                    )
            if order.get("Processed"):
                found.update({k: "order is processed" for k, p in posts if p["kind"] == "process"})
        return found

    def post(self, payload: dict[str, Any]) -> Outcome:
        """Set the tracking numbers, or process the order (already processed counts as done)."""
        if payload["kind"] == "tracking":
            self.client.set_shipping_info(payload["order_id"], payload["tracking_number"])
            return Outcome(SENT, result=f"tracking {payload['tracking_number']}")
        answer = self.client.process_order(payload["order_id"])
        if not answer.get("Processed") and "already processed" not in str(answer.get("Error") or ""):
            raise DataError("Linnworks", "Orders/ProcessOrder", str(answer.get("Error")))
        return Outcome(SENT, result="processed")


class Cin7Tracking(OmsTracking):
    """Cin7 Core: each despatch's parcels as shipping lines of the sale's fulfilment (`sale/fulfilment/ship`,
    carrier, box, tracking number and URL), added to what the shipment already has; the despatch that completes
    the order authorises the shipment in the same call."""

    def __init__(self, client: Cin7Client) -> None:
        super().__init__()
        self.client = client

    def held(self, order_id: str, payload: dict[str, Any]) -> str | None:
        """The sale's shipment shows the parcels' numbers (and is authorised, when the post authorises it)."""
        ships = [f.get("Ship") or {} for f in self.client.sale(order_id, for_send=True).get("Fulfilments") or []]
        numbers = {line.get("TrackingNumber") for s in ships for line in s.get("Lines") or []}
        wanted = {p["tracking_number"] for p in payload["parcels"]}
        authorised = any(s.get("Status") == AUTHORISED for s in ships)
        if wanted <= numbers and (authorised or not payload.get("authorise")):
            return f"shipment shows {payload['tracking_number']}" + (" and is authorised" if authorised else "")
        return None

    def post(self, payload: dict[str, Any]) -> Outcome:
        """Add the parcels to the shipment: DRAFT, or AUTHORISED by the despatch that completes the order."""
        lines = [
            {
                "ShipmentDate": p["shipped_at"],
                "Carrier": p["carrier"],
                "Box": p["box"],
                "TrackingNumber": p["tracking_number"],
                "TrackingURL": p["tracking_url"],
                "IsShipped": True,
            }
            for p in payload["parcels"]
        ]
        status = AUTHORISED if payload.get("authorise") else DRAFT
        body = {"TaskID": payload["order_id"], "Status": status, "AddTrackingNumbers": True, "Lines": lines}
        self.client.ship(body)
        return Outcome(SENT, result=f"tracking {payload['tracking_number']}, shipment {status}")


class BigCommerceTracking(OmsTracking):
    """BigCommerce: one shipment per parcel and ship-to address, with its items and tracking number
    (`POST /v2/orders/{id}/shipments`); the store moves the order to Partially Shipped, then Shipped."""

    def __init__(self, client: BigCommerceClient) -> None:
        super().__init__()
        self.client = client

    def held(self, order_id: str, payload: dict[str, Any]) -> str | None:
        """A shipment of the order carries the parcel's tracking number."""
        numbers = {s.get("tracking_number") for s in self.client.shipments(order_id)}
        return f"shipment with {payload['tracking_number']} exists" if payload["tracking_number"] in numbers else None

    def post(self, payload: dict[str, Any]) -> Outcome:
        """Create the shipment; Shipment id and the store's tracking link are kept as the result."""
        items = payload.get("items") or []
        if payload.get("order_address_id") is None or any(i.get("order_product_id") is None for i in items):
            return Outcome(
                FAILED,
                error="the order's BigCommerce line or ship-to ids are not staged (re-run the order sync): "
                "the shipment cannot name its items",
            )
        body = {
            "order_address_id": int(payload["order_address_id"]),
            "items": [{"order_product_id": int(i["order_product_id"]), "quantity": int(i["quantity"])} for i in items],
            "tracking_number": payload["tracking_number"],
            "tracking_link": payload.get("tracking_url") or "",
            "comments": f"{payload.get('carrier') or 'Warehouse'} despatch",
        }
        shipment = self.client.create_shipment(payload["order_id"], body)
        return Outcome(SENT, result=f"shipment {shipment.get('id')} tracking {payload['tracking_number']}")


class ShopifyFulfilments(OmsTracking):
    """Shopify: a fulfilment per parcel of the line items in it, or of every open fulfillment order once
    Linnworks processed the order, with the tracking company, number and URL, customer notified; Shopify's
    fulfilment id and status are kept as the result. A cancelled order is not fulfilled (`too_late`); lines
    fulfilled already (by an earlier post, or by someone in Shopify) are not fulfilled again."""

    def __init__(self, client: ShopifyClient, notify_customer: bool = True) -> None:
        super().__init__()
        self.client = client
        self.notify_customer = notify_customer

    def held(self, order_id: str, payload: dict[str, Any]) -> str | None:
        """A fulfilment of the order carries the tracking number (or, with none, any fulfilment exists)."""
        for f in self.client.order_fulfillments(order_id, for_send=True):
            numbers = set(f.get("tracking_numbers") or []) | {f.get("tracking_number")}
            if payload["tracking_number"] is None or payload["tracking_number"] in numbers:
                return f"fulfilment {f.get('id')} ({f.get('status')})"
        return None

    @staticmethod
    def wanted_lines(open_ones: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`line_items_by_fulfillment_order` for a parcel's items (order line item id -> quantity): each taken
        from the open fulfillment order lines that still have it to fulfil (a line known without its
        `fulfillable_quantity`, as the order sync read it, is taken at its word: Shopify refuses what it lacks)."""
        groups: dict[int, list[dict[str, int]]] = {}
        for item in items:
            wanted = int(item["quantity"])
            for fo in open_ones:
                for line in fo.get("line_items") or []:
                    if wanted and str(line.get("line_item_id")) == str(item["line_item_id"]):
                        room = line.get("fulfillable_quantity", wanted)
                        take = min(wanted, int(room or 0))
                        if take:
                            groups.setdefault(fo["id"], []).append({"id": line["id"], "quantity": take})
                            wanted -= take
        return [{"fulfillment_order_id": fo, "fulfillment_order_line_items": lines} for fo, lines in groups.items()]

    def post(self, payload: dict[str, Any]) -> Outcome:
        """Fulfil a parcel's line items, or (once Linnworks processed the order) all that is still open. A parcel
        names the fulfillment order lines as the order sync last read them, when they hold all its items: no read
        first (Shopify's one call bucket serves the order reads too). Shopify refuses lines that no longer hold
        them (fulfilled, moved or cancelled since); then, as for a whole order, the fulfillment orders are read
        now."""
        known, items = payload.get("fulfillment_orders") or [], payload.get("items") or []
        wanted = sum(int(i["quantity"]) for i in items)
        if payload["kind"] == "parcel" and known and items:
            groups = self.wanted_lines(known, items)
            if units(groups) == wanted:
                try:
                    return self.fulfil(groups, payload)
                except DataError as exc:
                    if exc.status not in (404, 422):
                        raise
        orders = self.client.fulfillment_orders(int(payload["order_id"]), for_send=True)
        open_ones = [fo for fo in orders if fo.get("status") in OPEN_FULFILMENT_ORDERS]
        statuses = sorted({str(fo.get("status")) for fo in orders}) or ["none"]
        if not open_ones and "cancelled" in statuses:
            return Outcome(TOO_LATE, error=f"Shopify order {payload['order_id']} is cancelled: not fulfilled")
        if payload["kind"] == "parcel":
            groups = self.wanted_lines(open_ones, payload["items"])
        else:
            groups = [{"fulfillment_order_id": fo["id"]} for fo in open_ones]  # no lines: the whole of each
        if not groups:
            return Outcome(SENT, result=f"nothing left to fulfil (fulfillment orders {', '.join(statuses)})")
        outcome = self.fulfil(groups, payload)
        if payload["kind"] == "parcel" and units(groups) < wanted:  # the rest fulfilled before (in Shopify)
            outcome = replace(outcome, result=f"{outcome.result}{PART}{units(groups)} of {wanted} units")
        return outcome

    def fulfil(self, groups: list[dict[str, Any]], payload: dict[str, Any]) -> Outcome:
        """Create the fulfilment of `groups` with the parcel's tracking."""
        tracking = {"company": payload.get("company") or ""}
        if payload["tracking_number"]:
            tracking["number"] = payload["tracking_number"]
        if payload.get("tracking_url"):
            tracking["url"] = payload["tracking_url"]
        fulfillment = {
            "line_items_by_fulfillment_order": groups,
            "tracking_info": tracking,
            "notify_customer": self.notify_customer,
        }
        made = self.client.create_fulfillment(fulfillment)
        return Outcome(SENT, result=f"fulfilment {made.get('id')} {made.get('status')}")


PART = ", only "  # in a parcel's result: Shopify held fewer of its units open than it names


def fulfilled_in_full(result: str | None) -> bool:
    """Whether a sent Shopify parcel's result says every unit it names was fulfilled by its post."""
    return result is not None and result.startswith("fulfilment ") and PART not in result


def units(groups: list[dict[str, Any]]) -> int:
    """The units `line_items_by_fulfillment_order` names."""
    return sum(int(line["quantity"]) for g in groups for line in g.get("fulfillment_order_line_items") or [])


TRACKING_SENDERS: dict[str, Callable[[Any], OmsTracking]] = {
    "linnworks": LinnworksTracking,
    "cin7": Cin7Tracking,
    "bigcommerce": BigCommerceTracking,
    "shopify": ShopifyFulfilments,
}
