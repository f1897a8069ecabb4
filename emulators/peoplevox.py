"""Peoplevox WMS emulator: SOAP 1.1 integration service v4 with CSV templates, sessions and `ResponseId=-1`.

Each `step()` is a shift tick, as Whistl's: every saved, non-cancelled sales order with items moves one status on,
New -> Picking -> Packed -> Despatched (a `partial_share` go Packed -> Partially despatched -> Despatched).
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import random
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators.core import EmulatedSystem
from emulators.world import World
from emulators.wsdl import WsdlSchema

NS = "http://www.peoplevox.net/"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
# The WSDL the real service publishes (a saved copy; see specs/README.md): served at `?wsdl`, and every
# envelope is held to its schema.
SCHEMA = WsdlSchema(Path(__file__).parent / "specs" / "peoplevox_integrationservicev4.wsdl")
TEMPLATES = {
    "Sales orders": (
        "SalesOrderNumber",
        "Customer",
        "CustomerPurchaseOrderReferenceNumber",
        "ShippingAddressLine1",
        "ShippingAddressLine2",
        "ShippingAddressCity",
        "ShippingAddressRegion",
        "ShippingAddressPostcode",
        "ShippingAddressCountry",
        "Status",
        "RequestedDeliveryDate",
        "ShippingCost",
        "Email",
        "ContactName",
        "TotalSale",
        "CreatedDate",
        "ServiceType",
        "ChannelName",
    ),
    "Sales order items": (
        "SalesOrderNumber",
        "ItemCode",
        "QuantityOrdered",
        "RequestedDeliveryDate",
        "Line",
        "Sequence",
        "SalePrice",
    ),
    "Item types": ("ItemCode", "Name", "Barcode", "Weight"),
    "Available": ("ItemCode", "Name", "Barcode", "Available", "SiteReference"),
    "Despatches": (
        "DespatchNumber",
        "SalesOrderNumber",
        "ItemCode",
        "Quantity",
        "TrackingNumber",
        "CarrierReference",
        "ServiceType",
        "DespatchDate",
    ),
    "Service types": ("Name", "CarrierReference"),
}
# The shift's statuses (Whistl's received -> picking -> packed -> despatched); from Packed a tick despatches.
STAGES = ("New", "Picking", "Packed", "Despatched")
SERVICE_TYPES = ("Royal Mail Tracked 24", "Royal Mail Tracked 48", "DPD Next Day", "DPD Classic International")
_CLAUSE = re.compile(
    r'^\s*(\w+)\s*(==|!=|>=|<=|>|<)\s*(?:"([^"]*)"|DateTime\(([\d,\s]+)\)|(-?\d+))\s*$|'
    r'^\s*(\w+)\.(Contains|StartsWith|EndsWith)\("([^"]*)"\)\s*$'
)


def _soap(
    method: str, response_id: int, total: int, detail: str, statuses: list[tuple[str, str]] | None = None
) -> Response:
    """An `IntegrationResponse` in the WSDL's element order; `statuses` are per-row (Reference, Success|Error)."""
    rows = "".join(
        f"<IntegrationStatusResponse><Reference>{escape(ref)}</Reference><Status>{status}</Status>"
        "</IntegrationStatusResponse>"
        for ref, status in statuses or []
    )
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
        f'<{method}Response xmlns="{NS}"><{method}Result><ResponseId>{response_id}</ResponseId>'
        f"<TotalCount>{total}</TotalCount><Detail>{escape(detail)}</Detail>"
        + (f"<Statuses>{rows}</Statuses>" if statuses is not None else "")
        + f"</{method}Result></{method}Response></soap:Body></soap:Envelope>"
    )
    return Response(body, 200, media_type="text/xml; charset=utf-8")


def _fault(message: str, code: str = "soap:Client") -> Response:
    """A SOAP 1.1 Fault with HTTP 500, as ASMX answers a request it cannot read."""
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{escape(message)}</faultstring><detail />"
        "</soap:Fault></soap:Body></soap:Envelope>"
    )
    return Response(body, 500, media_type="text/xml; charset=utf-8")


def _quantity(value: Any) -> int:
    """A quantity cell as a whole number (0 when empty or not a number)."""
    try:
        return int(float(value or 0))
    except (TypeError, ValueError):
        return 0


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


@functools.lru_cache(maxsize=256)
def _parse(clause: str) -> tuple[tuple[re.Match[str], ...], ...]:
    """A SearchClause as OR-ed groups of AND-ed parsed terms (parsed once, not once per row)."""
    groups = []
    for alternative in re.split(r"\s+OR\s+", clause):
        terms = []
        for term in re.split(r"\s+AND\s+", alternative):
            m = _CLAUSE.match(term)
            if not m:
                raise ValueError(f"Cannot parse search clause {term!r}")
            terms.append(m)
        groups.append(tuple(terms))
    return tuple(groups)


def _matches(row: dict[str, Any], clause: str) -> bool:
    """Evaluate a SearchClause (`AND`/`OR` of simple comparisons) against a row."""
    if not clause.strip():
        return True
    return any(all(_term(row, m) for m in terms) for terms in _parse(clause))


def _term(row: dict[str, Any], m: re.Match[str]) -> bool:
    if m.group(6):
        value = str(row.get(m.group(6), ""))
        return {"Contains": value.__contains__, "StartsWith": value.startswith, "EndsWith": value.endswith}[m.group(7)](
            m.group(8)
        )
    field, op, text, date, num = m.group(1, 2, 3, 4, 5)
    left: Any = row.get(field, "")
    right: Any = text
    if date:
        parts = [int(x) for x in date.split(",")]
        right = datetime(*parts, tzinfo=UTC)
        left = datetime.fromisoformat(str(left)) if left else datetime.min.replace(tzinfo=UTC)
    elif num:
        right, left = int(num), int(left or 0)
    return {
        "==": left == right,
        "!=": left != right,
        ">": left > right,
        "<": left < right,
        ">=": left >= right,
        "<=": left <= right,
    }[op]


class Peoplevox(EmulatedSystem):
    """A Peoplevox account: item types, availability, sales orders saved by CSV, despatches."""

    name = "peoplevox"

    def __init__(
        self,
        world: World,
        client_id: str = "brand01",
        username: str = "integration",
        password: str = "pvx-password",
        session_ttl_s: float = 1800.0,
        rate_scale: float = 1.0,
        partial_share: float = 0.1,
    ) -> None:
        super().__init__(rate_scale, world.seed)
        self.world = world
        self.credentials = (client_id, username, password)
        self.session_ttl_s = session_ttl_s
        self.sessions: dict[str, datetime] = {}
        self.limit = self.window(300, 60.0)  # soft limit (inferred)
        self.items = {s: world.by_sku[s] for s in world.wms_catalogue}
        self.available: dict[str, int] = dict(world.initial_stock)
        self.sales_orders: dict[str, dict[str, Any]] = {}
        self.order_items: dict[str, dict[str, dict[str, Any]]] = {}
        self.saves: Counter[str] = Counter()
        self.despatches: list[dict[str, Any]] = []
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.callbacks: list[dict[str, Any]] = []  # each callback delivered, with the answer it got
        self.service_types = list(SERVICE_TYPES)  # the account's carrier services (ops can remove one)
        self.partial_share = partial_share  # share of orders despatched in two parts on two ticks
        self.shift_rng = random.Random(f"{world.seed}:peoplevox")
        self.received_at: dict[str, float] = {}  # sales order number -> wall-clock epoch of its first SaveData
        self.despatch_log: list[dict[str, Any]] = []  # one entry per despatch, with when it was made

    def inspect(self) -> dict[str, Any]:
        """Orders saved (and how often), their items, despatches, subscriptions."""
        return {
            "sales_orders": self.sales_orders,
            "order_items": self.order_items,
            "saves": dict(self.saves),
            "despatches": self.despatches,
            "subscriptions": self.subscriptions,
            "callbacks": list(self.callbacks),
        }

    def control(self, action: str, body: dict[str, Any]) -> Any:
        """`pick {order}`: the warehouse starts picking a saved order; `despatch {order, items?}`: one despatch
        (one number, one new tracking number) of the order's items, or of `items` (item code -> quantity) only;
        `step`: one shift tick (see `step`)."""
        if action == "pick":
            self.sales_orders[body["order"]]["Status"] = "Picking"
            return {"status": "Picking"}
        if action == "despatch":
            only = body.get("items")
            return self._despatch(body["order"], only, complete=only is None)
        if action == "step":
            return self.step()
        return super().control(action, body)

    def _despatch(self, ref: str, only: dict[str, Any] | None, complete: bool) -> dict[str, str]:
        """One despatch (one number, one new tracking number, the callbacks) of the order's items, or of `only`
        (item code -> quantity); the order is then Despatched when `complete`, else Partially despatched."""
        tracking = f"JD{self.rng.randint(10**15, 10**16 - 1)}GB"
        now = datetime.now(UTC).isoformat(timespec="seconds")
        number = f"DN{len({d['DespatchNumber'] for d in self.despatches}) + 1:06d}"
        for item in self.order_items.get(ref, {}).values():
            if only is not None and item["ItemCode"] not in only:
                continue
            self.despatches.append(
                {
                    "DespatchNumber": number,
                    "SalesOrderNumber": ref,
                    "ItemCode": item["ItemCode"],
                    "Quantity": only[item["ItemCode"]] if only is not None else item["QuantityOrdered"],
                    "TrackingNumber": tracking,
                    "CarrierReference": "DPD",
                    "ServiceType": self.sales_orders[ref].get("ServiceType", ""),
                    "DespatchDate": now,
                }
            )
        self.sales_orders[ref]["Status"] = "Despatched" if complete else "Partially despatched"
        self.despatch_log.append({"wms": self.name, "order_ref": ref, "despatch_ref": number, "at": time.time()})
        values = {"SalesOrderNumber": ref, "TrackingNumber": tracking, "DespatchNumber": number}
        self.notify("TrackingNumberReceived", values)
        return {"tracking_number": tracking, "despatch_number": number}

    def _left(self, ref: str) -> dict[str, int]:
        """Item code -> quantity ordered and not yet despatched."""
        left: Counter[str] = Counter()
        for item in self.order_items.get(ref, {}).values():
            left[item["ItemCode"]] += _quantity(item.get("QuantityOrdered"))
        for d in self.despatches:
            if d["SalesOrderNumber"] == ref:
                left[d["ItemCode"]] -= _quantity(d.get("Quantity"))
        return {code: qty for code, qty in left.items() if qty > 0}

    def step(self, now: datetime | None = None) -> dict[str, Any]:
        """One shift tick: every saved, non-cancelled order with items moves one status on (New -> Picking ->
        Packed -> Despatched); a `partial_share` despatch part of their items first and the rest on a later tick."""
        with self.lock:
            moved: dict[str, str] = {}
            despatched: list[dict[str, str]] = []
            for ref, order in list(self.sales_orders.items()):
                status = order.get("Status")
                items = list(self.order_items.get(ref, {}).values())
                if not items or status in ("Cancelled", "Despatched"):
                    continue
                if status in STAGES[:2]:
                    order["Status"] = STAGES[STAGES.index(status) + 1]
                elif status == "Packed":
                    codes = [i["ItemCode"] for i in items]
                    left = self._left(ref)
                    partial = (
                        self.shift_rng.random() < self.partial_share
                        and len(set(codes)) == len(codes)
                        and (len(left) > 1 or any(q > 1 for q in left.values()))
                    )
                    if partial:
                        first = next(c for c in codes if c in left)
                        take = {first: max(1, left[first] // 2)} if len(left) == 1 else {first: left[first]}
                        despatched.append({"order": ref, **self._despatch(ref, take, complete=False)})
                    else:
                        despatched.append({"order": ref, **self._despatch(ref, None, complete=True)})
                elif status == "Partially despatched":
                    rest = self._left(ref)
                    if rest:
                        despatched.append({"order": ref, **self._despatch(ref, rest, complete=True)})
                    else:
                        order["Status"] = "Despatched"
                else:
                    continue
                moved[ref] = order["Status"]
            return {"moved": moved, "despatched": despatched}

    def wms_timeline(self) -> dict[str, Any]:
        """A copy, under the lock, of when each sales order was first saved (`received`) and of each despatch."""
        with self.lock:
            return {"received": dict(self.received_at), "despatches": [dict(d) for d in self.despatch_log]}

    def expire_sessions(self) -> None:
        """Forget every session."""
        self.sessions.clear()

    def error_body(self, status: int, message: str) -> Response:
        """A SOAP fault."""
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault>'
            f"<faultcode>soap:Server</faultcode><faultstring>{escape(message)}</faultstring></soap:Fault>"
            "</soap:Body></soap:Envelope>"
        )
        return Response(body, status, media_type="text/xml; charset=utf-8")

    def throttled(self, request: Request, retry_after: float) -> Response:
        """Over the soft limit: HTTP 429 with Retry-After (inferred)."""
        response = self.error_body(429, "Too many requests")
        response.headers["Retry-After"] = str(max(1, round(retry_after)))
        return response

    def check_rate(self, request: Request) -> Response | None:
        """A soft per-account limit."""
        ok, retry, _ = self.limit.take("account")
        return None if ok else self.throttled(request, retry)

    def routes(self) -> list[Route]:
        """The v4 integration service endpoint."""
        return [Route("/{client_id}/resources/integrationservicev4.asmx", self.soap, methods=["POST", "GET"])]

    async def soap(self, request: Request) -> Response:
        """Serve the WSDL (`?wsdl`), or dispatch a SOAP 1.1 call after holding it to the WSDL: the SOAPAction
        header names the operation, the body element and its children follow the schema, and every operation
        but `Authenticate` carries the `UserSessionCredentials` header."""
        if request.method == "GET":
            if "wsdl" not in {k.lower() for k in request.query_params}:
                return Response("<html><body>IntegrationServiceV4</body></html>", media_type="text/html")
            location = str(request.url).split("?", 1)[0]
            return Response(SCHEMA.served(location), media_type="text/xml; charset=utf-8")
        if request.path_params["client_id"] != self.credentials[0]:
            return self.error_body(404, "Unknown client")
        action = request.headers.get("soapaction", "").strip().strip('"')
        method = next((op for op, soap_action in SCHEMA.actions.items() if soap_action == action), None)
        if method is None:
            return _fault(f"Server did not recognize the value of HTTP Header SOAPAction: {action}.")
        try:
            root = ET.fromstring(await request.body())
        except ET.ParseError as exc:
            return _fault(f"Server was unable to read request. ---> There is an error in XML document {exc.position}.")
        body = root.find(f"{{{SOAP}}}Body") if root.tag == f"{{{SOAP}}}Envelope" else None
        call = next(iter(body), None) if body is not None else None
        if call is None or call.tag != f"{{{NS}}}{method}":
            found = call.tag if call is not None else "nothing"
            return _fault(f"Server was unable to read request. ---> <{method} xmlns='{NS}'> was expected, not {found}.")
        problem = SCHEMA.problem(call, SCHEMA.element_fields(method) or [], method)
        header = root.find(f"{{{SOAP}}}Header")
        if problem is None and method != "Authenticate":
            credentials = header.find(f"{{{NS}}}UserSessionCredentials") if header is not None else None
            if credentials is None:
                problem = "the UserSessionCredentials SOAP header is required"
            else:
                fields = SCHEMA.types["UserSessionCredentials"]
                problem = SCHEMA.problem(credentials, fields, "UserSessionCredentials")
        if problem:
            return _fault(f"Server was unable to read request. ---> {problem}")

        def arg(name: str, parent: ET.Element = call) -> str:
            node = parent.find(f".//{{{NS}}}{name}")
            return (node.text or "") if node is not None else ""

        if method == "Authenticate":
            given = (
                arg("clientId"),
                arg("username"),
                base64.b64decode(arg("password") or b"").decode("utf-8", "replace"),
            )
            if given != self.credentials:
                return _soap(method, -1, 0, "Authentication failed: invalid client id, username or password")
            session = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            self.sessions[session] = datetime.now(UTC)
            return _soap(method, 0, 1, f"{self.credentials[0]},{session}")
        header = root.find(f"{{{SOAP}}}Header")
        session = arg("SessionId", header) if header is not None else ""
        started = self.sessions.get(session)
        if started is None or (datetime.now(UTC) - started).total_seconds() > self.session_ttl_s:
            self.sessions.pop(session, None)
            return _soap(method, -1, 0, "System.Exception: Session has expired or is invalid. Please re-authenticate.")
        handler = {
            "GetData": self.get_data,
            "SaveData": self.save_data,
            "GetSaveTemplate": self.get_template,
            "SubscribeEvent": self.subscribe,
            "SubscribePostEvent": self.subscribe,
            "UnsubscribeEvent": self.unsubscribe,
        }.get(method)
        if handler is None:
            return self.error_body(500, f"Unknown method {method}")
        with self.lock:
            return handler(method, arg)

    def _rows(self, template: str) -> list[dict[str, Any]]:
        if template == "Item types":
            return [
                {"ItemCode": s, "Name": p.title, "Barcode": p.barcode, "Weight": p.weight_g / 1000}
                for s, p in self.items.items()
            ]
        if template == "Available":
            return [
                {
                    "ItemCode": s,
                    "Name": p.title,
                    "Barcode": p.barcode,
                    "Available": self.available.get(s, 0),
                    "SiteReference": "PrimarySite",
                }
                for s, p in self.items.items()
            ]
        if template == "Sales orders":
            return list(self.sales_orders.values())
        if template == "Sales order items":
            return [i for items in self.order_items.values() for i in items.values()]
        if template == "Despatches":
            return list(self.despatches)
        if template == "Service types":
            return [{"Name": s, "CarrierReference": s.split()[0]} for s in self.service_types]
        raise KeyError(template)

    def get_data(self, method: str, arg: Any) -> Response:
        """Paged CSV of a template's rows that match the search clause."""
        template = arg("TemplateName")
        try:
            rows = [r for r in self._rows(template) if _matches(r, arg("SearchClause"))]
        except KeyError:
            return _soap(method, -1, 0, f"Template '{template}' does not exist")
        except ValueError as exc:
            return _soap(method, -1, 0, str(exc))
        page, per_page = int(arg("PageNo") or 1), int(arg("ItemsPerPage") or 100)
        chunk = rows[(page - 1) * per_page : page * per_page]
        return _soap(method, 0, len(rows), _csv(TEMPLATES[template], chunk))

    def get_template(self, method: str, arg: Any) -> Response:
        """The CSV header of a save template."""
        name = arg("templateName")
        if name not in TEMPLATES:
            return _soap(method, -1, 0, f"Template '{name}' does not exist")
        return _soap(method, 0, 1, ",".join(TEMPLATES[name]))

    def save_data(self, method: str, arg: Any) -> Response:
        """Insert or update sales orders / items from CSV, row by row: each row's outcome is in `Statuses`
        (Reference = the sales order number, Success or Error); refused rows are named in `Detail` and make the
        answer `ResponseId=-1`, the others are saved."""
        template, data = arg("TemplateName"), arg("CsvData")
        if template not in ("Sales orders", "Sales order items"):
            return _soap(method, -1, 0, f"Template '{template}' cannot be saved")
        rows = list(csv.DictReader(io.StringIO(data)))
        errors: list[str] = []
        statuses: list[tuple[str, str]] = []
        saved = 0
        for n, row in enumerate(rows, start=2):
            ref = (row.get("SalesOrderNumber") or "").strip()
            problem = None
            if not ref or len(ref) > 30:
                problem = "SalesOrderNumber is required (max 30 characters)"
            elif (
                template == "Sales orders"
                and ("ServiceType" in row or ref not in self.sales_orders)
                and row.get("ServiceType") not in self.service_types
            ):
                problem = f"ServiceType '{row.get('ServiceType')}' does not exist"
            elif (
                template == "Sales orders"
                and row.get("Status") == "Cancelled"
                and self.sales_orders.get(ref, {}).get("Status", "New") not in ("New", "Cancelled")
            ):
                problem = f"Sales order '{ref}' is {self.sales_orders[ref]['Status']} and cannot be cancelled"
            elif template == "Sales order items" and row.get("ItemCode") not in self.items:
                problem = f"ItemCode '{row.get('ItemCode')}' does not exist"
            elif template == "Sales order items" and ref not in self.sales_orders:
                problem = f"Sales order '{ref}' does not exist"
            statuses.append((ref, "Error" if problem else "Success"))
            if problem:
                errors.append(f"Line {n}: {problem}")
                continue
            saved += 1
            if template == "Sales orders":
                self.received_at.setdefault(ref, time.time())
                if "ServiceType" in row:  # a whole order (a status change alone is not a save of the order)
                    self.saves[ref] += 1
                status = (
                    "Cancelled" if row.get("Status") == "Cancelled" else self.sales_orders.get(ref, {}).get("Status")
                )
                self.sales_orders[ref] = {**self.sales_orders.get(ref, {}), **row, "Status": status or "New"}
            else:
                self.order_items.setdefault(ref, {})[row.get("Line") or row["ItemCode"]] = row
        return _soap(method, -1 if errors else 0, saved, "; ".join(errors), statuses)

    def subscribe(self, method: str, arg: Any) -> Response:
        """Register a callback; the id cannot be listed later."""
        sid = str(len(self.subscriptions) + 1)
        self.subscriptions[sid] = {
            "event": arg("eventType"),
            "url": arg("callbackUrl") or arg("postUrl"),
            "params": arg("postParams") or "",
            "post": method == "SubscribePostEvent",
        }
        return _soap(method, 0, 1, sid)

    def notify(self, event: str, values: dict[str, str]) -> None:
        """Call back every subscription to `event`, off the request's thread: `{Placeholder}`s in the URL and
        post parameters take the event's values (URL-encoded); SubscribePostEvent posts the parameters as a
        form. Each delivery's answer is kept in `callbacks` (Peoplevox does not retry)."""

        def fill(text: str) -> str:
            return re.sub(r"\{(\w+)\}", lambda m: quote(values.get(m.group(1), ""), safe=""), text)

        def deliver(sub: dict[str, Any]) -> None:
            try:
                if sub["post"]:
                    answer = httpx.post(
                        fill(sub["url"]),
                        content=fill(sub["params"]),
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                        timeout=5.0,
                    )
                else:
                    answer = httpx.get(fill(sub["url"]), timeout=5.0)
                status: int | str = answer.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.callbacks.append({"event": event, "url": sub["url"], "values": values, "status": status})

        for sub in [s for s in self.subscriptions.values() if s["event"] == event]:
            threading.Thread(target=deliver, args=(sub,), daemon=True).start()

    def unsubscribe(self, method: str, arg: Any) -> Response:
        """Remove a subscription."""
        found = self.subscriptions.pop(arg("subscriptionId"), None)
        return _soap(method, 0 if found else -1, 1 if found else 0, "" if found else "Subscription not found")
