"""Peoplevox calling back when it despatches, so tracking need not wait for the next poll.

- The subscription (`SubscribePostEvent` on `TrackingNumberReceived`) is an effect like any other: made once
  through the `peoplevox_subscriptions` ledger, its id kept there, since Peoplevox cannot list subscriptions.
- `fulfil peoplevox-callbacks` listens at `peoplevox.callback_url`: each callback carrying the shared secret is
  filed in an inbox folder (kept, never deleted) and answered at once.
- `peoplevox_callback_sensor` starts a Peoplevox despatch run as soon as callbacks arrive; the run reads the
  despatches from Peoplevox itself, so a lost or forged callback can only start a run, never make a post.
"""

import hmac
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import dagster as dg
import polars as pl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fulfil_assets import effects
from fulfil_assets.effects import FAILED, PENDING, SENDING, SENT, Outcome, to_payload
from resources.http import DataError, TransientError
from resources.peoplevox import PeoplevoxClient, PeoplevoxResource
from resources.warehouse import SCHEMA, Warehouse

EVENT = "TrackingNumberReceived"
POST_PARAMS = "order={SalesOrderNumber}&despatch={DespatchNumber}&tracking={TrackingNumber}"
TABLE = "peoplevox_subscriptions"
SENSOR_INTERVAL_S = 5


def inbox_dir() -> Path:
    """Where callbacks are filed: `peoplevox_events/` in the data folder."""
    return Path(os.environ.get("FULFIL_DATA_DIR", "data")) / "peoplevox_events"


def subscription_intents(callback_url: str, flow: str) -> pl.DataFrame:
    """The ledger row of the one subscription fulfil needs (the secret is added when it is sent, never stored)."""
    payload = {"event": EVENT, "post_url": callback_url, "post_params": POST_PARAMS}
    return pl.DataFrame(
        {
            "idempotency_key": [f"peoplevox:subscribe:{EVENT}:{callback_url}"],
            "order_key": [f"peoplevox:subscription:{EVENT}"],
            "flow": [flow],
            "target": ["peoplevox"],
            "event": [EVENT],
            "post_url": [callback_url],
            "payload": [to_payload(payload)],
        }
    )


class PeoplevoxSubscriptions:
    """Peoplevox as an effect target for subscriptions. It cannot list them, so an attempt with no known answer
    is made again: a second subscription only means a second callback, and callbacks only start runs."""

    def __init__(self, client: PeoplevoxClient, token: str) -> None:
        self.client, self.token = client, token

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Nothing can be read back from Peoplevox."""
        return {}

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """Subscribe; the subscription id is the result."""
        for key, raw in rows.select("idempotency_key", "payload").iter_rows():
            p = json.loads(raw)
            params = f"{p['post_params']}&token={self.token}"
            try:
                sid = self.client.subscribe_post_event(p["event"], p["post_url"], params)
            except TransientError as exc:
                yield [key], Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
                continue
            except DataError as exc:
                yield [key], Outcome(FAILED, error=str(exc))
                continue
            yield [key], Outcome(SENT, result=f"subscription {sid}")


def file_callback(inbox: Path, fields: dict[str, str]) -> Path:
    """Keep one callback as a JSON file named by its arrival (written whole, then renamed into place)."""
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    body = {"received_at": datetime.now(UTC).isoformat(), **fields}
    partial = inbox / f".{name}.tmp"
    partial.write_text(json.dumps(body, sort_keys=True))
    partial.rename(inbox / name)
    return inbox / name


def callback_app(inbox: Path, path: str, token: str) -> Starlette:
    """The receiver: a form POST at `path` with the shared secret is filed; anything else is refused."""

    async def receive(request: Request) -> PlainTextResponse:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        given = form.get("token", "")
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return PlainTextResponse("unknown sender", status_code=401)
        fields = {k: form.get(k, "") for k in ("order", "despatch", "tracking")}
        file_callback(inbox, fields)
        return PlainTextResponse("OK")

    return Starlette(routes=[Route(path or "/", receive, methods=["POST"])])


def serve(callback_url: str, token: str, inbox: Path) -> None:
    """Listen where Peoplevox was told to call (the URL's host and port) until stopped."""
    import uvicorn

    url = urlparse(callback_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    uvicorn.run(callback_app(inbox, url.path, token), host=url.hostname or "127.0.0.1", port=port, log_level="warning")


def subscription_asset(callback_url: str, flow: str, shadow: bool) -> dg.AssetsDefinition:
    """`peoplevox_callback_subscription`: the despatch callback subscription, made once."""

    @dg.asset(
        group_name="despatch",
        kinds={"peoplevox"},
        pool="peoplevox",
    )
    def peoplevox_callback_subscription(warehouse: Warehouse, peoplevox: PeoplevoxResource) -> dg.MaterializeResult:
        """Peoplevox asked (`SubscribePostEvent`, `TrackingNumberReceived`) to post each despatch to
        `peoplevox.callback_url`, once, through the `peoplevox_subscriptions` ledger that keeps its id."""
        resource = peoplevox
        if not resource.callback_token:
            raise dg.Failure(
                description="peoplevox.callback_url is set but its secret is empty: set the environment variable "
                "named by peoplevox.credentials.callback_token"
            )
        client = resource.get_client()
        with warehouse.session() as db:
            effects.intend(db, TABLE, subscription_intents(callback_url, flow), shadow=shadow)
            try:
                report = effects.deliver(db, TABLE, PeoplevoxSubscriptions(client, resource.callback_token))
            finally:
                client.close()
            held = db.read(f"SELECT status, result FROM {SCHEMA}.{TABLE} WHERE post_url = :u", {"u": callback_url})
        return dg.MaterializeResult(
            metadata={**report.as_metadata(), "subscriptions": dg.MetadataValue.json(held.to_dicts())}
        )

    return peoplevox_callback_subscription


def peoplevox_callback_sensor_factory(job: Any, inbox: Path) -> dg.SensorDefinition:
    """The sensor starting `job` (the Peoplevox despatch job) when callbacks have arrived."""

    @dg.sensor(job=job, minimum_interval_seconds=SENSOR_INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING)
    def peoplevox_callback_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """One Peoplevox despatch run for the callbacks filed since the last tick (the cursor is the last file
        taken; the files stay where they are)."""
        last = context.cursor or ""
        new = sorted(p.name for p in inbox.glob("*.json") if p.name > last) if inbox.is_dir() else []
        if not new:
            return dg.SensorResult(run_requests=[], cursor=last or None)
        orders = sorted({json.loads((inbox / n).read_text()).get("order", "") for n in new} - {""})
        request = dg.RunRequest(
            run_key=f"peoplevox-callback:{new[-1]}",
            tags={"fulfil/peoplevox_callbacks": str(len(new)), "fulfil/orders": ",".join(orders)[:200]},
        )
        return dg.SensorResult(run_requests=[request], cursor=new[-1])

    return peoplevox_callback_sensor
