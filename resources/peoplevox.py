"""Peoplevox SOAP client (integration service v4; shared by ingestion and pushes) and its Dagster resource."""

from __future__ import annotations

import base64
import csv
import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import dagster as dg
import httpx
from pydantic import Field

from resources.http import SEND_RESERVE, ApiClient, AuthError, DataError, RateBudget, TransientError, shared_budget

NS = "http://www.peoplevox.net/"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SOFT_LIMIT_PER_MINUTE = 300  # none published: a polite default


@dataclass(frozen=True)
class SoapResult:
    """`<Method>Result`: ResponseId 0 ok / -1 error, TotalCount, Detail (CSV, ids or error text), and for
    SaveData the per-row `Statuses` as (Reference, `Success` or `Error`)."""

    response_id: int
    total: int
    detail: str
    statuses: tuple[tuple[str, str], ...] = ()


class PeoplevoxClient(ApiClient):
    """Authenticate (base64 password) -> session, sent in a `UserSessionCredentials` header on every call;
    `ResponseId=-1` is an error whose text is in `Detail`; an expired session is renewed once, transparently."""

    system = "Peoplevox"

    def __init__(
        self,
        base_url: str,
        client_id: str,
        username: str,
        password: str,
        budget_share: float = 0.5,
        timeout_s: float = 60.0,
        max_attempts: int = 6,
    ) -> None:
        super().__init__(base_url, timeout_s, max_attempts)
        self._login = (client_id, username, password)
        self.budget_share = budget_share
        self._session: str | None = None
        self._lock = threading.Lock()

    def budget_for(self, call: str) -> RateBudget | None:
        """A polite share of a soft per-minute limit."""
        limit = max(1, int(SOFT_LIMIT_PER_MINUTE * self.budget_share))
        return shared_budget(self.system, self.base_url, "account", limit, 60.0, send_reserve=SEND_RESERVE)

    def parse(self, call: str, response: httpx.Response) -> SoapResult:
        """The `<Method>Result` of a SOAP answer."""
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError:
            raise TransientError(self.system, call, "answer was not valid XML (truncated?)") from None
        result = root.find(f".//{{{NS}}}{call}Result")
        if result is None:
            raise TransientError(self.system, call, "no result element in the answer")

        def text(name: str) -> str:
            node = result.find(f"{{{NS}}}{name}")
            return (node.text or "") if node is not None else ""

        statuses = tuple(
            (s.findtext(f"{{{NS}}}Reference") or "", s.findtext(f"{{{NS}}}Status") or "")
            for s in result.iterfind(f"{{{NS}}}Statuses/{{{NS}}}IntegrationStatusResponse")
        )
        return SoapResult(int(text("ResponseId") or -1), int(text("TotalCount") or 0), text("Detail"), statuses)

    def _envelope(self, method: str, body: str, session: str | None) -> str:
        header = ""
        if session:
            header = (
                f'<soap:Header><UserSessionCredentials xmlns="{NS}"><UserId>0</UserId>'
                f"<ClientId>{escape(self._login[0])}</ClientId><SessionId>{escape(session)}</SessionId>"
                "</UserSessionCredentials></soap:Header>"
            )
        return (
            f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}">{header}<soap:Body>'
            f'<{method} xmlns="{NS}">{body}</{method}></soap:Body></soap:Envelope>'
        )

    def _post(self, method: str, body: str, session: str | None, effect: bool = False) -> SoapResult:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NS}{method}"'}
        return self.request(
            "POST", self.base_url, method, content=self._envelope(method, body, session), headers=headers, effect=effect
        )

    def authenticate(self) -> str:
        """A new session id."""
        client_id, username, password = self._login
        encoded = base64.b64encode(password.encode()).decode()
        result = self._post(
            "Authenticate",
            f"<clientId>{escape(client_id)}</clientId><username>{escape(username)}"
            f"</username><password>{encoded}</password>",
            None,
        )
        if result.response_id != 0 or "," not in result.detail:
            raise AuthError(self.system, "Authenticate", "credentials rejected by Peoplevox")
        self._session = result.detail.split(",", 1)[1]
        return self._session

    def call(self, method: str, body: str, *, effect: bool = False) -> SoapResult:
        """A SOAP call in the session; renews an expired session once; `ResponseId=-1` raises DataError unless
        the answer says row by row what happened (`Statuses`): then the caller reads them. `effect`: the call
        changes something (see `ApiClient.request`)."""
        with self._lock:
            session = self._session or self.authenticate()
        result = self._post(method, body, session, effect)
        if result.response_id == -1 and "session" in result.detail.lower():
            with self._lock:
                session = self.authenticate()
            result = self._post(method, body, session, effect)
        if result.response_id == -1 and not result.statuses:
            raise DataError(self.system, method, result.detail[:300])
        return result

    def get_data(self, template: str, search_clause: str = "", per_page: int = 1000) -> Iterator[list[dict[str, str]]]:
        """Rows of a template matching the clause, page by page (while `PageNo * ItemsPerPage < TotalCount`)."""
        page = 1
        while True:
            body = (
                f"<getRequest><TemplateName>{escape(template)}</TemplateName><PageNo>{page}</PageNo>"
                f"<ItemsPerPage>{per_page}</ItemsPerPage><SearchClause>{escape(search_clause)}</SearchClause>"
                "</getRequest>"
            )
            result = self.call("GetData", body)
            rows = list(csv.DictReader(io.StringIO(result.detail)))
            if rows:
                yield rows
            if not rows or page * per_page >= result.total:
                return
            page += 1

    def save_data(self, template: str, rows: list[dict[str, Any]], action: int = 0) -> SoapResult:
        """Save CSV rows to a template; the answer's `statuses` say which rows Peoplevox took (`Success`) and
        which it refused (`Error`, its words in `detail`)."""
        if not rows:
            return SoapResult(0, 0, "")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        body = (
            f"<saveRequest><TemplateName>{escape(template)}</TemplateName><CsvData>{escape(buf.getvalue())}"
            f"</CsvData><Action>{action}</Action></saveRequest>"
        )
        return self.call("SaveData", body, effect=True)

    def subscribe_post_event(self, event: str, post_url: str, post_params: str, search_filter: str = "") -> str:
        """Ask Peoplevox to POST `post_params` (its `{Placeholder}`s filled in) to `post_url` on each `event`;
        the subscription id, which Peoplevox cannot list later."""
        body = (
            f"<eventType>{escape(event)}</eventType><filter>{escape(search_filter)}</filter>"
            f"<postUrl>{escape(post_url)}</postUrl><postParams>{escape(post_params)}</postParams>"
        )
        return self.call("SubscribePostEvent", body, effect=True).detail

    def save_template(self, template: str) -> list[str]:
        """The columns a save template takes (`GetSaveTemplate`), in order."""
        result = self.call("GetSaveTemplate", f"<templateName>{escape(template)}</templateName>")
        return [c.strip() for c in result.detail.split(",") if c.strip()]


class PeoplevoxResource(dg.ConfigurableResource):
    """Peoplevox account (password from an environment variable)."""

    base_url: str = Field(description="https://{host}/{ClientId}/resources/integrationservicev4.asmx")
    client_id: str
    username: str
    password: str
    budget_share: float = 0.5
    callback_token: str = Field("", description="the secret Peoplevox sends back with each callback")

    def get_client(self) -> PeoplevoxClient:
        """A client for one run."""
        return PeoplevoxClient(self.base_url, self.client_id, self.username, self.password, self.budget_share)
