"""Peoplevox as an effect target for orders: `SaveData` of `Sales orders`, then `Sales order items`.

Every call's `ResponseId`, `TotalCount` and per-row `Statuses` are checked: a row Peoplevox refused fails its order
with Peoplevox's own words (`Detail`), the rest are saved. Before resending an attempt with no known outcome, the
order is looked up by its number (`GetData`): an order Peoplevox holds with all its lines is confirmed, not resent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import polars as pl

from fulfil_assets.effects import FAILED, PENDING, SENDING, SENT, TOO_LATE, Outcome
from fulfil_assets.push.common import PAYLOAD_SCHEMA, orders_with_items
from resources.http import DataError, TransientError
from resources.peoplevox import PeoplevoxClient, SoapResult

SALES_ORDERS, ORDER_ITEMS = "Sales orders", "Sales order items"
ORDER_COLUMNS = (
    "SalesOrderNumber",
    "Customer",
    "ShippingAddressLine1",
    "ShippingAddressLine2",
    "ShippingAddressCity",
    "ShippingAddressRegion",
    "ShippingAddressPostcode",
    "ShippingAddressCountry",
    "Email",
    "ContactName",
    "TotalSale",
    "CreatedDate",
    "ServiceType",
    "ChannelName",
)
ITEM_COLUMNS = ("SalesOrderNumber", "ItemCode", "QuantityOrdered", "Line", "Sequence", "SalePrice")
ORDERS_PER_CALL = 100
LOOKUP_CHUNK = 50
_LINE = re.compile(r"Line (\d+): ([^;]*)")


class TemplateMismatch(DataError):
    """The account's save template lacks columns fulfil sends (Peoplevox templates are configurable)."""


def peoplevox_payloads(ready: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """`order_key, order_ref, flow, payload`: per ready order the exact `Sales orders` row and `Sales order
    items` rows it is saved as (`lines`: order_key, line_no, sku, quantity, unit_price as the WMS receives them)."""
    rows = []
    for o in orders_with_items(ready, lines):
        order = {
            "SalesOrderNumber": o["order_ref"],
            "Customer": o["ship_name"] or "",
            "ShippingAddressLine1": o["address1"] or "",
            "ShippingAddressLine2": " ".join(x for x in (o["address2"], o["address3"]) if x),
            "ShippingAddressCity": o["city"] or "",
            "ShippingAddressRegion": o["region"] or "",
            "ShippingAddressPostcode": o["postcode_normalised"] or "",
            "ShippingAddressCountry": o["country_code"] or "",
            "Email": o["email"] or "",
            "ContactName": o["ship_name"] or "",
            "TotalSale": f"{float(o['total'] or 0):.2f}",
            "CreatedDate": o["created_at"].strftime("%Y-%m-%dT%H:%M:%S") if o["created_at"] else "",
            "ServiceType": o["service_code"],
            "ChannelName": o["channel"] or "",
        }
        order_items = [
            {
                "SalesOrderNumber": o["order_ref"],
                "ItemCode": i["sku"],
                "QuantityOrdered": str(i["quantity"]),
                "Line": str(i["line_no"]),
                "Sequence": str(i["line_no"]),
                "SalePrice": "" if i["unit_price"] is None else f"{float(i['unit_price']):.2f}",
            }
            for i in o["items"]
        ]
        payload = json.dumps({"order": order, "items": order_items}, sort_keys=True)
        rows.append({"order_key": o["order_key"], "order_ref": o["order_ref"], "flow": o["flow"], "payload": payload})
    return pl.DataFrame(rows, schema=PAYLOAD_SCHEMA)


def _refusals(result: SoapResult, refs: list[str]) -> dict[str, str]:
    """Sales order number -> Peoplevox's words, for each row the answer's `Statuses` mark `Error` (its `Detail`
    names rows by CSV line: the header is line 1)."""
    words = {int(n): text.strip() for n, text in _LINE.findall(result.detail)}
    refused: dict[str, str] = {}
    for i, (ref, status) in enumerate(result.statuses):
        if status != "Success":
            refused.setdefault(ref or refs[i], words.get(i + 2, result.detail or "refused"))
    return refused


def sales_order_clause(refs: list[str]) -> str:
    """The `GetData` search clause for these sales order numbers."""
    return " OR ".join(f'SalesOrderNumber == "{r}"' for r in refs)


class PeoplevoxOrders:
    """Saves orders into Peoplevox, checking every answer row by row."""

    def __init__(self, client: PeoplevoxClient) -> None:
        self.client = client
        self.calls = 0
        # Orders an unconfirmed attempt saved the header of but not all the lines: only the lines go again.
        self.headers_held: set[str] = set()

    def check_templates(self) -> None:
        """Refuse to send when the account's save templates lack a column fulfil sends: Peoplevox would drop it."""
        for template, columns in ((SALES_ORDERS, ORDER_COLUMNS), (ORDER_ITEMS, ITEM_COLUMNS)):
            offered = set(self.client.save_template(template))
            missing = [c for c in columns if c not in offered]
            if missing:
                raise TemplateMismatch(
                    "Peoplevox", "GetSaveTemplate", f"template '{template}' has no column {', '.join(missing)}"
                )

    def batches(self, rows: pl.DataFrame) -> Iterable[pl.DataFrame]:
        """Up to `ORDERS_PER_CALL` orders per pair of `SaveData` calls."""
        return rows.iter_slices(ORDERS_PER_CALL)

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Rows whose order Peoplevox already holds with every line it was sent with."""
        wanted = {
            ref: (key, json.loads(p))
            for key, ref, p in rows.select("idempotency_key", "order_ref", "payload").iter_rows()
        }
        refs = sorted(wanted)
        found: dict[str, str] = {}
        for start in range(0, len(refs), LOOKUP_CHUNK):
            chunk = refs[start : start + LOOKUP_CHUNK]
            held, lines = self._lookup(chunk)
            for ref in chunk:
                key, payload = wanted[ref]
                sent_lines = {i["Line"] for i in payload["items"]}
                if ref in held and sent_lines <= lines.get(ref, set()):
                    found[key] = f"Peoplevox holds sales order {ref} with {len(sent_lines)} line(s)"
                elif ref in held:
                    self.headers_held.add(ref)
        return found

    def _lookup(self, refs: list[str]) -> tuple[set[str], dict[str, set[str]]]:
        """The sales orders Peoplevox holds among `refs`, and the line numbers it holds of each. A search that
        fails transiently (one that times out: a long search answers slowly) is asked again in halves, down to one
        order, so that a slow account cannot leave unconfirmed orders unchecked run after run."""
        clause = sales_order_clause(refs)
        try:
            held = {r["SalesOrderNumber"] for page in self.client.get_data(SALES_ORDERS, clause) for r in page}
            lines: dict[str, set[str]] = {}
            for page in self.client.get_data(ORDER_ITEMS, clause):
                for r in page:
                    lines.setdefault(r["SalesOrderNumber"], set()).add(r["Line"])
            return held, lines
        except TransientError:
            if len(refs) == 1:
                raise
            first, second = self._lookup(refs[: len(refs) // 2]), self._lookup(refs[len(refs) // 2 :])
            return first[0] | second[0], first[1] | second[1]

    def _save(self, template: str, rows: list[dict[str, Any]]) -> SoapResult:
        self.calls += 1
        result = self.client.save_data(template, rows)
        if not result.statuses and result.total != len(rows):
            raise DataError("Peoplevox", "SaveData", f"{template}: saved {result.total} of {len(rows)} rows")
        return result

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Save the orders (not the ones whose header an earlier attempt already saved), then the items of the
        orders Peoplevox took; yield each order's outcome."""
        keys = dict(rows.select("order_ref", "idempotency_key").iter_rows())
        payloads = {ref: json.loads(p) for ref, p in rows.select("order_ref", "payload").iter_rows()}
        refs = list(payloads)
        headers = [r for r in refs if r not in self.headers_held]
        try:
            head = (
                self._save(SALES_ORDERS, [payloads[r]["order"] for r in headers]) if headers else SoapResult(0, 0, "")
            )
            refused = _refusals(head, headers)
            taken = [r for r in refs if r not in refused]
            item_rows = [i for r in taken for i in payloads[r]["items"]]
            items = self._save(ORDER_ITEMS, item_rows) if item_rows else SoapResult(0, 0, "")
        except TransientError as exc:
            yield list(keys.values()), Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
            return
        except DataError as exc:
            yield list(keys.values()), Outcome(FAILED, error=f"Peoplevox refused the batch: {exc}")
            return
        item_refusals = _refusals(items, [i["SalesOrderNumber"] for i in item_rows])
        for ref, words in refused.items():
            yield [keys[ref]], Outcome(FAILED, error=f"Peoplevox refused the order: {words}")
        for ref in taken:
            if ref in item_refusals:
                yield [keys[ref]], Outcome(FAILED, error=f"Peoplevox refused a line: {item_refusals[ref]}")
            else:
                n = len(payloads[ref]["items"])
                yield [keys[ref]], Outcome(SENT, result=f"saved to Peoplevox with {n} line(s)")


PICKING_STARTED = ("Picking", "Picked", "Packing", "Packed", "Partially despatched", "Despatched", "Shipped")


def live_statuses(client: PeoplevoxClient, refs: list[str]) -> dict[str, str]:
    """Sales order number -> its status in Peoplevox now, for the orders Peoplevox holds (`GetData`)."""
    clause = sales_order_clause(refs)
    return {r["SalesOrderNumber"]: r.get("Status", "") for page in client.get_data(SALES_ORDERS, clause) for r in page}


class PeoplevoxCancels:
    """Cancels sales orders in Peoplevox: asks each order's live status first (`GetData`), sets the ones not yet
    picked `Cancelled` (`SaveData`, its per-row answer confirms), and reports the rest as too late."""

    def __init__(self, client: PeoplevoxClient) -> None:
        self.client = client

    def batches(self, rows: pl.DataFrame) -> Iterable[pl.DataFrame]:
        """Up to `LOOKUP_CHUNK` cancellations per status lookup and save."""
        return rows.iter_slices(LOOKUP_CHUNK)

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Cancellations Peoplevox already shows (the order's status is `Cancelled`)."""
        keys = dict(rows.select("order_ref", "idempotency_key").iter_rows())
        status = live_statuses(self.client, list(keys))
        return {keys[r]: "Peoplevox shows the order Cancelled" for r, s in status.items() if s == "Cancelled"}

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Ask, then cancel what may still be cancelled; yield each order's outcome."""
        keys = dict(rows.select("order_ref", "idempotency_key").iter_rows())
        asked = {r: json.loads(p)[0][2] for r, p in rows.select("order_ref", "payload").iter_rows()}
        try:
            status = live_statuses(self.client, list(keys))
        except TransientError as exc:  # nothing was changed: ask again next time
            yield list(keys.values()), Outcome(PENDING, error=str(exc))
            return
        due = []
        for ref, key in keys.items():
            now = status.get(ref)
            if now is None:
                yield [key], Outcome(SENT, result="Peoplevox never held the order")
            elif now == "Cancelled":
                yield [key], Outcome(SENT, result="Peoplevox already shows the order Cancelled")
            elif now in PICKING_STARTED:
                words = f"customer cancelled order {ref} at {asked[ref]}; Peoplevox shows it {now}"
                yield [key], Outcome(TOO_LATE, error=f"{words}: stop it at the warehouse or arrange a return")
            else:
                due.append(ref)
        if not due:
            return
        try:
            result = self.client.save_data(SALES_ORDERS, [{"SalesOrderNumber": r, "Status": "Cancelled"} for r in due])
        except TransientError as exc:
            yield [keys[r] for r in due], Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
            return
        except DataError as exc:
            yield [keys[r] for r in due], Outcome(FAILED, error=f"Peoplevox refused the cancellations: {exc}")
            return
        refused = _refusals(result, due)
        for ref in due:
            if ref in refused:
                yield [keys[ref]], Outcome(TOO_LATE, error=f"Peoplevox refused the cancellation: {refused[ref]}")
            else:
                yield [keys[ref]], Outcome(SENT, result="cancelled in Peoplevox")


class PeoplevoxAmends(PeoplevoxOrders):
    """Saves an order's new content over the one Peoplevox holds, once its live status says picking has not
    started (`SaveData` updates the order and its lines by order number and line); from picking on the amendment
    is too late, and so is a line taken off: `SaveData` adds and changes lines but cannot remove one."""

    def _items(self, refs: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Sales order number -> line -> the `Sales order items` row Peoplevox holds."""
        clause = sales_order_clause(refs)
        held: dict[str, dict[str, dict[str, Any]]] = {}
        for page in self.client.get_data(ORDER_ITEMS, clause):
            for row in page:
                held.setdefault(row["SalesOrderNumber"], {})[str(row.get("Line"))] = row
        return held

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Amendments whose new content (the order's fields and every line) Peoplevox already shows."""
        wanted = {
            r: (k, json.loads(p)) for k, r, p in rows.select("idempotency_key", "order_ref", "payload").iter_rows()
        }
        clause = sales_order_clause(list(wanted))
        items = self._items(list(wanted))
        found = {}
        for page in self.client.get_data(SALES_ORDERS, clause):
            for row in page:
                key, payload = wanted[row["SalesOrderNumber"]]
                lines = items.get(row["SalesOrderNumber"], {})
                same_order = all(row.get(c, v) == v for c, v in payload["order"].items())
                same_lines = all(
                    str(lines.get(i["Line"], {}).get(c)) == str(i[c])
                    for i in payload["items"]
                    for c in ("ItemCode", "QuantityOrdered")
                )
                if same_order and same_lines:
                    found[key] = "Peoplevox shows the amended order"
        return found

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Ask the live status and the lines held, then save what may still change."""
        keys = dict(rows.select("order_ref", "idempotency_key").iter_rows())
        payloads = {ref: json.loads(p) for ref, p in rows.select("order_ref", "payload").iter_rows()}
        try:
            status = live_statuses(self.client, list(keys))
            held = self._items(list(keys))
        except TransientError as exc:
            yield list(keys.values()), Outcome(PENDING, error=str(exc))
            return
        late = {r for r in keys if status.get(r) in (*PICKING_STARTED, "Cancelled") or r not in status}
        for ref in late:
            yield [keys[ref]], Outcome(TOO_LATE, error=f"Peoplevox shows the order {status.get(ref, 'unknown')}")
        for ref in sorted(set(keys) - late):
            kept = {i["Line"] for i in payloads[ref]["items"]}
            lines = sorted(held.get(ref, {}).items())
            gone = [f"line {n} ({row.get('ItemCode')})" for n, row in lines if n not in kept]
            if gone:
                late.add(ref)
                yield (
                    [keys[ref]],
                    Outcome(
                        TOO_LATE,
                        error=f"{', '.join(gone)} taken off after the order was sent: "
                        "Peoplevox's SaveData cannot remove a line",
                    ),
                )
        due = rows.filter(~pl.col("order_ref").is_in(list(late)))
        if due.height:
            yield from super().send(due)
