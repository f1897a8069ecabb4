"""Linnworks as an effect target for storefront orders (`shopify_linnworks`): `Orders/CreateOrders`.

Each Shopify order becomes a Linnworks channel order (Source `SHOPIFY`, the Shopify order number as reference and
its id as external reference, lines linked by SKU) at the Linnworks location its Shopify location maps to. Linnworks
skips an order it already holds by Source, SubSource and reference; before resending an attempt whose outcome is
unknown, the order is looked up by its reference (`Orders/GetOrderDetailsByReferenceId`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import polars as pl

from fulfil_assets.effects import FAILED, PENDING, SENDING, SENT, TOO_LATE, Outcome
from fulfil_assets.push.common import PAYLOAD_SCHEMA, orders_with_items
from resources.http import DataError, TransientError
from resources.linnworks import LinnworksClient

SOURCE, SUBSOURCE = "SHOPIFY", "Shopify"
ORDERS_PER_CALL = 50


def _iso(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def linnworks_payloads(ready: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """`order_key, order_ref, flow, payload`: per ready storefront order the exact Linnworks `ChannelOrder` it is
    created as and the location it is created at (`lines`: order_key, line_no, sku, quantity, unit_price)."""
    rows = []
    for o in orders_with_items(ready, lines):
        address = {
            "FullName": o["ship_name"] or "",
            "Company": o["company"] or "",
            "Address1": o["address1"] or "",
            "Address2": o["address2"] or "",
            "Address3": o["address3"] or "",
            "Town": o["city"] or "",
            "Region": o["region"] or "",
            "PostCode": o["postcode_normalised"] or "",
            "Country": o["country_code"] or "",
            "MatchCountryCode": o["country_code"] or "",
            "PhoneNumber": o["phone_normalised"] or "",
            "EmailAddress": o["email"] or "",
        }
        order = {
            "Source": SOURCE,
            "SubSource": SUBSOURCE,
            "ReferenceNumber": o["order_ref"],
            "ExternalReference": o["source_order_id"],
            "ChannelBuyerName": o["ship_name"] or "",
            "ReceivedDate": _iso(o["created_at"]),
            "PaymentStatus": "Paid",
            "Currency": o["currency"] or "GBP",
            "PostalServiceName": o["service_code"],
            "MatchPostalServiceTag": o["service_code"],
            "AutomaticallyLinkBySKU": True,
            "DeliveryAddress": address,
            "BillingAddress": address,
            "OrderItems": [
                {
                    "ItemNumber": str(i["line_no"]),
                    "ChannelSKU": i["sku"],
                    "ItemTitle": i["sku"],
                    "Qty": int(i["quantity"]),
                    "PricePerUnit": float(i["unit_price"] or 0),
                    "TaxCostInclusive": True,
                }
                for i in o["items"]
            ],
        }
        payload = json.dumps({"location": o["target_location"], "order": order}, sort_keys=True)
        rows.append({"order_key": o["order_key"], "order_ref": o["order_ref"], "flow": o["flow"], "payload": payload})
    return pl.DataFrame(rows, schema=PAYLOAD_SCHEMA)


class LinnworksOrders:
    """Creates storefront orders in Linnworks, one call per batch of orders at one location."""

    def __init__(self, client: LinnworksClient) -> None:
        self.client = client
        self.calls = 0

    def batches(self, rows: pl.DataFrame) -> Iterable[pl.DataFrame]:
        """Orders grouped by their Linnworks location (one per call), up to `ORDERS_PER_CALL` a call."""
        located = rows.with_columns(
            pl.col("payload").map_elements(lambda p: json.loads(p)["location"], return_dtype=pl.String).alias("_loc")
        )
        for _, group in located.group_by("_loc", maintain_order=True):
            yield from group.drop("_loc").iter_slices(ORDERS_PER_CALL)

    def _held(self, reference: str) -> str | None:
        """The Linnworks id of the order fulfil created under `reference`, if Linnworks holds it."""
        for order in self.client.orders_by_reference(reference):
            info = order.get("GeneralInfo") or {}
            if info.get("ReferenceNum") == reference and info.get("Source") == SOURCE:
                return str(order.get("OrderId"))
        return None

    def holds(self, rows: pl.DataFrame) -> dict[str, str | Outcome]:
        """Rows whose order Linnworks already holds (looked up by reference), with its Linnworks id."""
        found: dict[str, str | Outcome] = {}
        for key, ref in rows.select("idempotency_key", "order_ref").iter_rows():
            order_id = self._held(ref)
            if order_id:
                found[key] = created(order_id, "found at target: Linnworks holds it as order")
        return found

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Create the batch's orders; each saved order is confirmed with its Linnworks id. When Linnworks saved
        fewer than were sent (it skips orders it already holds), each order is looked up by reference."""
        payloads = [json.loads(p) for p in rows["payload"]]
        keys, refs = rows["idempotency_key"].to_list(), rows["order_ref"].to_list()
        self.calls += 1
        try:
            ids = self.client.create_orders([p["order"] for p in payloads], payloads[0]["location"])
        except TransientError as exc:
            yield keys, Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
            return
        except DataError as exc:
            yield keys, Outcome(FAILED, error=f"Linnworks refused the orders: {exc}")
            return
        if len(ids) == len(keys):
            for key, order_id in zip(keys, ids, strict=True):
                yield [key], created(order_id)
            return
        for key, ref in zip(keys, refs, strict=True):
            order_id = self._held(ref)
            if order_id:
                yield [key], created(order_id)
            else:
                yield [key], Outcome(SENDING, error=f"Linnworks saved {len(ids)} of {len(keys)}; {ref} not found yet")


def created(order_id: str, said: str = "Linnworks order") -> Outcome:
    """A storefront order Linnworks holds as `order_id`: the id kept in the ledger's `target_ref` (the tracking of
    its parcels is posted back through it)."""
    return Outcome(SENT, result=f"{said} {order_id}", target_ref=order_id)


class LinnworksCancels:
    """Cancels, in Linnworks, the storefront orders fulfil created there: each order's live state first (looked
    up by reference); an open one is cancelled (`Orders/CancelOrder`), one Linnworks already processed is too
    late (it has left the warehouse), one already cancelled is confirmed as it is."""

    def __init__(self, client: LinnworksClient) -> None:
        self.client = client
        self.calls = 0

    def batches(self, rows: pl.DataFrame) -> Iterable[pl.DataFrame]:
        """One order per call (Linnworks cancels one order at a time)."""
        return rows.iter_slices(1)

    def _order(self, reference: str) -> dict[str, Any] | None:
        for order in self.client.orders_by_reference(reference):
            info = order.get("GeneralInfo") or {}
            if info.get("ReferenceNum") == reference and info.get("Source") == SOURCE:
                return order
        return None

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Rows whose Linnworks order is cancelled already."""
        found = {}
        for key, ref in rows.select("idempotency_key", "order_ref").iter_rows():
            order = self._order(ref)
            if order is not None and (order.get("GeneralInfo") or {}).get("HoldOrCancel"):
                found[key] = f"Linnworks order {order.get('OrderId')} is cancelled"
        return found

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Look the order up, then cancel it or say why not."""
        for key, ref in rows.select("idempotency_key", "order_ref").iter_rows():
            try:
                order = self._order(ref)
                if order is None:
                    yield [key], Outcome(FAILED, error=f"Linnworks holds no order {ref} created by fulfil")
                    continue
                info = order.get("GeneralInfo") or {}
                if order.get("Processed"):
                    yield (
                        [key],
                        Outcome(TOO_LATE, error=f"Linnworks already processed {ref}: it has left the warehouse"),
                    )
                    continue
                if info.get("HoldOrCancel"):
                    yield [key], Outcome(SENT, result=f"Linnworks order {order.get('OrderId')} was already cancelled")
                    continue
                self.calls += 1
                location = order.get("FulfilmentLocationId") or "00000000-0000-0000-0000-000000000000"
                self.client.cancel_order(str(order.get("OrderId")), location, "cancelled by the customer in Shopify")
                yield [key], Outcome(SENT, result=f"Linnworks order {order.get('OrderId')} cancelled")
            except TransientError as exc:
                yield [key], Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
            except DataError as exc:
                yield [key], Outcome(FAILED, error=f"Linnworks refused the cancel: {exc}")


ADDRESS_FIELDS = ("FullName", "Company", "Address1", "Address2", "Address3", "Town", "Region", "PostCode")
ADDRESS_FIELDS += ("PhoneNumber", "EmailAddress")


def customer_address(delivery: dict[str, Any]) -> dict[str, Any]:
    """A `ChannelOrder` delivery address as Linnworks' `CustomerAddress` (the country as its ISO code)."""
    return {**{k: delivery.get(k) or "" for k in ADDRESS_FIELDS}, "Country": delivery.get("Country") or ""}


class LinnworksAmends(LinnworksCancels):
    """Amends, in Linnworks, the storefront orders fulfil created there whose address changed in Shopify: the
    order is looked up by reference; an open one gets the new address (`Orders/SetOrderCustomerInfo`, and the
    amended Linnworks order then reaches its own warehouse as a Linnworks amendment); a processed or cancelled
    one is too late, and so is a change of lines, which fulfil never edits on an order already created."""

    def _address_of(self, order: dict[str, Any]) -> dict[str, Any]:
        a = ((order.get("CustomerInfo") or {}).get("Address")) or {}
        return {k: a.get(k) or "" for k in ADDRESS_FIELDS}

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Rows whose Linnworks order already shows the new address."""
        found = {}
        for key, ref, raw in rows.select("idempotency_key", "order_ref", "payload").iter_rows():
            order = self._order(ref)
            wanted = customer_address(json.loads(raw)["order"]["DeliveryAddress"])
            if order is not None and self._address_of(order) == {k: wanted[k] for k in ADDRESS_FIELDS}:
                found[key] = f"Linnworks order {order.get('OrderId')} shows the new address"
        return found

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Look the order up, then set its address or say why not."""
        for key, ref, raw in rows.select("idempotency_key", "order_ref", "payload").iter_rows():
            wanted = json.loads(raw)["order"]
            try:
                order = self._order(ref)
                if order is None:
                    yield [key], Outcome(FAILED, error=f"Linnworks holds no order {ref} created by fulfil")
                    continue
                if order.get("Processed") or (order.get("GeneralInfo") or {}).get("HoldOrCancel"):
                    yield [key], Outcome(TOO_LATE, error=f"Linnworks already processed or cancelled {ref}")
                    continue
                held = sorted((i.get("SKU"), int(i.get("Quantity") or 0)) for i in order.get("Items") or [])
                now = sorted((i["ChannelSKU"], int(i["Qty"])) for i in wanted["OrderItems"])
                if held != now:
                    error = (
                        f"the lines changed ({held} -> {now}): fulfil does not edit the lines of an order in Linnworks"
                    )
                    yield [key], Outcome(TOO_LATE, error=error)
                    continue
                self.calls += 1
                name = wanted.get("ChannelBuyerName") or wanted["DeliveryAddress"].get("FullName") or ""
                self.client.set_customer_info(
                    str(order.get("OrderId")), name, customer_address(wanted["DeliveryAddress"])
                )
                yield [key], Outcome(SENT, result=f"Linnworks order {order.get('OrderId')} has the new address")
            except TransientError as exc:
                yield [key], Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
            except DataError as exc:
                yield [key], Outcome(FAILED, error=f"Linnworks refused the amendment: {exc}")
