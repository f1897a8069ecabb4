"""Cancellation assets: orders cancelled at source after they were sent go to their warehouse through the
`cancellations` ledger and the effect module (one asset per warehouse), or to the warehouse owner when too late."""

from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets import effects
from fulfil_assets.config import FulfilConfig, target_of
from fulfil_assets.ledger import mark_cancelled, now_utc, open_exceptions
from fulfil_assets.push.cancellations import cancellation_intents, too_late_exceptions
from fulfil_assets.push.common import record_intents
from fulfil_assets.push.linnworks_orders import LinnworksCancels
from fulfil_assets.push.peoplevox_orders import PeoplevoxCancels
from fulfil_assets.push.whistl_inbox import ORDERS_PER_FILE, WhistlInbox
from resources.file_drop import FileDrop
from resources.linnworks import LinnworksResource
from resources.peoplevox import PeoplevoxResource
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

TABLE = "cancellations"


def cancelled_at_source(db: WarehouseDb, wms: str) -> pl.DataFrame:
    """Orders cancelled in their order system that were sent (or may have been sent) to `wms`."""
    return db.read(
        f"""SELECT o.order_key, o.order_ref, s.flow, s.wms, s.status AS submission_status,
                   o.updated_at AS cancelled_at
            FROM {SCHEMA}.orders o JOIN {SCHEMA}.wms_submissions s USING (order_key)
            WHERE o.status = 'cancelled' AND s.wms = '{wms}'""",
        schema={
            "order_key": pl.String,
            "order_ref": pl.String,
            "flow": pl.String,
            "wms": pl.String,
            "submission_status": pl.String,
            "cancelled_at": pl.Datetime("us", "UTC"),
        },
    )


def send_cancellations(
    context: dg.AssetExecutionContext,
    db: WarehouseDb,
    config: FulfilConfig,
    wms: str,
    sender: effects.Target,
    **deliver: Any,
) -> dict[str, Any]:
    """Record the cancellations due at `wms` (shadow for a flow in shadow mode), open `CANCEL_TOO_LATE` for
    orders cancelled after their despatch, send the rest; what the warehouse refused as too late (`too_late`)
    opens the same exception. Returns the metadata."""
    cancelled = cancelled_at_source(db, wms)
    intents = cancellation_intents(cancelled)
    record_intents(db, config, TABLE, intents, [f for f in config.flows if target_of(f) == wms])
    now = now_utc()
    open_exceptions(db, too_late_exceptions(cancelled), "cancellation", now)
    report = effects.deliver(db, TABLE, sender, where=f"wms = '{wms}'", log=context.log.warning, **deliver)
    late = db.read(
        f"SELECT order_key, last_error FROM {SCHEMA}.{TABLE} WHERE wms = '{wms}' AND status = '{effects.TOO_LATE}'"
    )
    open_exceptions(
        db,
        late.select("order_key", pl.lit("CANCEL_TOO_LATE").alias("reason_code"), pl.col("last_error").alias("detail")),
        "cancellation",
        now,
    )
    confirmed = db.read(
        f"SELECT order_key FROM {SCHEMA}.{TABLE} WHERE wms = '{wms}' "
        f"AND status IN ('{effects.SENT}', '{effects.ACKNOWLEDGED}')"
    )
    if wms != "whistl":  # the call's answer is the confirmation (Whistl's comes in its acknowledgement file)
        mark_cancelled(db, wms, confirmed["order_key"].to_list())
    totals = db.read(f"SELECT status, COUNT(*) AS n FROM {SCHEMA}.{TABLE} WHERE wms = '{wms}' GROUP BY status")
    return {
        "cancels_sent": report.sent,
        "found_already_at_wms": report.found_at_target,
        "refused_too_late": report.failed,
        "cancelled_at_source_after_sending": intents.height,
        "cancelled_after_despatch": int((cancelled["submission_status"] == "despatched").sum()),
        **{f"ledger_{status}": int(n) for status, n in totals.iter_rows()},
        "first_errors": dg.MetadataValue.json(report.errors[:5]),
    }


def whistl_cancellations(config: FulfilConfig) -> dg.AssetsDefinition:
    """The asset that cancels orders at Whistl."""
    grace_s = 60.0 * (config.systems.whistl.ack_grace_minutes if config.systems.whistl else 0)

    @dg.asset(
        name="whistl_cancellations",
        group_name="push",
        deps=[dg.AssetKey("orders")],
        kinds={"whistl", "sftp"},
    )
    def whistl_cancellations(
        context: dg.AssetExecutionContext, warehouse: Warehouse, whistl_drop: FileDrop
    ) -> dg.MaterializeResult:
        """Cancellations sent to Whistl (the `cancellations` ledger): every order the customer cancelled in its
        order system after fulfil sent it to Whistl goes as a `can_*.csv` row, once. Whistl answers in its
        acknowledgement file: `CANCELLED` (the ledger row and the order's submission turn `cancelled`) or, once
        picking has started, `CANCEL_TOO_LATE`, which opens an exception for the warehouse owner with what the
        customer asked and when. An order cancelled after it was despatched gets that exception at once. Runs in
        the order sync and in its own short `cancellation_job`, to beat picking."""
        with warehouse.session() as db:
            with whistl_drop.session() as drop:
                inbox = WhistlInbox(db, drop, TABLE)
                metadata = send_cancellations(
                    context, db, config, "whistl", inbox, settle_s=grace_s, batches=inbox.batches, chunk=ORDERS_PER_FILE
                )
            return dg.MaterializeResult(metadata={**metadata, "files_written": inbox.files})

    return whistl_cancellations


def peoplevox_cancellations(config: FulfilConfig) -> dg.AssetsDefinition:
    """The asset that cancels orders at Peoplevox."""

    @dg.asset(
        name="peoplevox_cancellations",
        group_name="push",
        deps=[dg.AssetKey("orders")],
        kinds={"peoplevox", "soap"},
        pool="peoplevox",
    )
    def peoplevox_cancellations(
        context: dg.AssetExecutionContext, warehouse: Warehouse, peoplevox: PeoplevoxResource
    ) -> dg.MaterializeResult:
        """Cancellations sent to Peoplevox (the `cancellations` ledger): for every order the customer cancelled
        after fulfil sent it, Peoplevox is first asked the order's live status; before picking the order is set
        `Cancelled` through `SaveData` (its answer confirms it), from picking on it becomes `CANCEL_TOO_LATE` for
        the warehouse owner with Peoplevox's status and when the customer asked. Once each, under retries."""
        with warehouse.session() as db:
            client = peoplevox.get_client()
            sender = PeoplevoxCancels(client)
            metadata = send_cancellations(context, db, config, "peoplevox", sender, batches=sender.batches)
            return dg.MaterializeResult(metadata={**metadata, **client.stats.as_metadata()})

    return peoplevox_cancellations


def linnworks_cancellations(config: FulfilConfig) -> dg.AssetsDefinition:
    """The asset that cancels, in Linnworks, storefront orders fulfil created there."""

    @dg.asset(
        name="linnworks_cancellations",
        group_name="push",
        deps=[dg.AssetKey("orders")],
        kinds={"shopify", "linnworks"},
    )
    def linnworks_cancellations(
        context: dg.AssetExecutionContext, warehouse: Warehouse, linnworks: LinnworksResource
    ) -> dg.MaterializeResult:
        """Cancellations sent to Linnworks (the `cancellations` ledger): every Shopify order the customer
        cancelled after fulfil created it in Linnworks is looked up there first; an open one is cancelled
        (`Orders/CancelOrder`; the cancelled Linnworks order then reaches its warehouse as a Linnworks
        cancellation), one Linnworks already processed becomes `CANCEL_TOO_LATE` for the warehouse owner."""
        with warehouse.session() as db:
            client = linnworks.get_client()
            sender = LinnworksCancels(client)
            metadata = send_cancellations(context, db, config, "linnworks", sender, batches=sender.batches)
            return dg.MaterializeResult(
                metadata={**metadata, "cancel_calls": sender.calls, **client.stats.as_metadata()}
            )

    return linnworks_cancellations


def cancellation_assets(config: FulfilConfig) -> list[dg.AssetsDefinition]:
    """One cancellation asset per target the configured flows send orders to."""
    targets = {target_of(f) for f in config.flows}
    builders = {
        "whistl": whistl_cancellations,
        "peoplevox": peoplevox_cancellations,
        "linnworks": linnworks_cancellations,
    }
    return [build(config) for wms, build in builders.items() if wms in targets]
