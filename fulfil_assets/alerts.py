"""Alerts: a failed run, or an asset check that turns red, announced to the configured webhook once, through the
effect module (`alerts` ledger: intend -> send -> confirm). Sensors only decide what to announce; the sending is
a short `alerts_job` run, so an alert is recorded and retried like any other effect and never holds a sensor."""

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from fulfil_assets import effects
from fulfil_assets.effects import FAILED, PENDING, SENDING, SENT, Outcome
from fulfil_assets.schedules import LATENCY
from resources.http import DataError, TransientError
from resources.warehouse import Warehouse
from resources.webhook import AlertWebhook, WebhookClient

TABLE = "alerts"
ALERTS_JOB = "alerts_job"
MAX_METADATA_CHARS = 600


def alert(kind: str, subject: str, key: str, text: str, **details: Any) -> dict[str, Any]:
    """One alert as it is posted: a Slack-style `text` line for people, and the details for machines."""
    return {"key": key, "kind": kind, "subject": subject, "text": text, **details}


def run_failure_alert(run_id: str, job_name: str, message: str) -> dict[str, Any]:
    """The alert for a failed run: which job, which run, what Dagster said."""
    return alert(
        "run_failure",
        job_name,
        f"alert:run:{run_id}",
        f"fulfil: run of {job_name} failed: {message}",
        job=job_name,
        run_id=run_id,
        message=message,
    )


def queued_run_alert(run_id: str, job_name: str, minutes: float) -> dict[str, Any]:
    """The alert for a run that has waited in the queue too long: which job, which run, for how many minutes."""
    return alert(
        "run_queued",
        job_name,
        f"alert:queued:{run_id}",
        f"fulfil: run {run_id} of {job_name} has been queued {minutes:.0f} minutes and has not started",
        job=job_name,
        run_id=run_id,
        minutes_queued=round(minutes, 1),
    )


def check_alert(
    asset: str, check: str, record_id: int, run_id: str, severity: str, description: str | None, metadata: str
) -> dict[str, Any]:
    """The alert for a check that turned red: the check, how bad, and what its metadata says."""
    return alert(
        "check_failed",
        f"{asset}:{check}",
        f"alert:check:{asset}:{check}:{record_id}",
        f"fulfil: check {check} on {asset} is red ({severity}): {description or metadata}",
        asset=asset,
        check=check,
        severity=severity,
        run_id=run_id,
        metadata=metadata,
    )


def alert_intents(alerts: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Ledger rows for `alerts` (the payload is what is posted)."""
    return pl.DataFrame(
        [
            {
                "idempotency_key": a["key"],
                "order_key": a["subject"],
                "target": "webhook",
                "payload": effects.to_payload(a),
                "kind": a["kind"],
                "subject": a["subject"],
            }
            for a in alerts
        ],
        schema={c: pl.String for c in ("idempotency_key", "order_key", "target", "payload", "kind", "subject")},
    )


class WebhookAlerts:
    """Posts each alert. A webhook cannot be asked what it holds: an unconfirmed alert goes again with the same
    `Idempotency-Key`, which a receiver uses to drop the repeat."""

    def __init__(self, client: WebhookClient) -> None:
        self.client = client

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Nothing can be read back from a webhook."""
        return {}

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """One POST per alert."""
        for key, raw in rows.select("idempotency_key", "payload").iter_rows():
            try:
                self.client.post(json.loads(raw), key)
                yield [key], Outcome(SENT, result="posted")
            except TransientError as exc:
                yield [key], Outcome(SENDING if exc.maybe_applied else PENDING, error=str(exc))
            except DataError as exc:
                yield [key], Outcome(FAILED, error=str(exc))


class AlertsRunConfig(dg.Config):
    """The alerts a sensor asks this run to announce (JSON each); none: send what is still due."""

    alerts: list[str] = []


@dg.op
def send_alerts(
    context: dg.OpExecutionContext, config: AlertsRunConfig, warehouse: Warehouse, alert_webhook: AlertWebhook
) -> dg.Output:
    """Record the alerts asked for, then post every alert still due."""
    client = alert_webhook.get_client()
    with warehouse.session() as db:
        new, _ = effects.intend(db, TABLE, alert_intents([json.loads(a) for a in config.alerts]))
        try:
            report = effects.deliver(db, TABLE, WebhookAlerts(client), settle_s=2 * client.timeout_s)
        finally:
            client.close()
    if report.errors:
        context.log.warning(f"alerts not delivered yet: {report.errors[:3]}")
    return dg.Output(None, metadata={"alerts_new": new, **report.as_metadata()})


@dg.job(name=ALERTS_JOB, tags=LATENCY, description="Post due alerts to the alert webhook.")
def alerts_job() -> None:
    """Post due alerts to the alert webhook."""
    send_alerts()


def _request(alerts: list[dict[str, Any]], key: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=key, run_config={"ops": {"send_alerts": {"config": {"alerts": [json.dumps(a) for a in alerts]}}}}
    )


@dg.run_failure_sensor(request_job=alerts_job, default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext) -> Iterator[dg.RunRequest]:
    """Every failed run (but an alerts run: a webhook that is down must not announce itself in a loop)."""
    run = context.dagster_run
    if run.job_name == ALERTS_JOB:
        return
    message = context.failure_event.message or "failed"
    yielded = run_failure_alert(run.run_id, run.job_name, message)
    yield _request([yielded], yielded["key"])


def _summary(metadata: dict[str, Any]) -> str:
    text = json.dumps({k: getattr(v, "value", v) for k, v in metadata.items()}, default=str, sort_keys=True)
    return text[:MAX_METADATA_CHARS]


def failed_check_alert_sensor(check_keys: Sequence[dg.AssetCheckKey]) -> dg.SensorDefinition:
    """A sensor that announces each check turning red (its latest evaluation failed, the one before did not):
    one alert per turn, not one per evaluation while it stays red. The cursor is the newest evaluation seen."""

    @dg.sensor(
        name="failed_check_alert_sensor",
        job=alerts_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Red checks since the last tick, as one alerts run."""
        since = int(context.cursor or 0)
        storage = context.instance.event_log_storage
        latest = storage.get_latest_asset_check_execution_by_key(list(check_keys))
        alerts, newest = [], since
        for key, record in sorted(latest.items(), key=lambda kv: kv[1].id):
            newest = max(newest, record.id)
            if record.id <= since or record.status != AssetCheckExecutionRecordStatus.FAILED:
                continue
            history = storage.get_asset_check_execution_history(key, limit=2)
            before = [r for r in history if r.id < record.id]
            if before and before[0].status == AssetCheckExecutionRecordStatus.FAILED:
                continue  # still red: announced when it turned
            evaluation = record.event.asset_check_evaluation if record.event else None
            alerts.append(
                check_alert(
                    key.asset_key.to_user_string(),
                    key.name,
                    record.id,
                    record.run_id,
                    evaluation.severity.value if evaluation else "ERROR",
                    evaluation.description if evaluation else None,
                    _summary(dict(evaluation.metadata)) if evaluation else "",
                )
            )
        requests = [_request(alerts, f"alert:checks:{newest}")] if alerts else []
        return dg.SensorResult(run_requests=requests, cursor=str(newest))

    return sensor


def queued_since(instance: dg.DagsterInstance, record: dg.RunRecord) -> float:
    """When a run entered the queue (seconds since the epoch): its enqueued event, else when it was created."""
    enqueued = instance.get_records_for_run(
        record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED, limit=1
    ).records
    return enqueued[0].timestamp if enqueued else record.create_timestamp.timestamp()


def queued_run_alert_sensor(minutes: int) -> dg.SensorDefinition:
    """A sensor that announces each run queued longer than `minutes` without starting (a run holding the warehouse
    or a pool too long, a stopped daemon): one alert per run, however long it stays queued. The cursor holds the
    runs already announced that are still queued. Alerts runs themselves are left out (they announce)."""

    @dg.sensor(
        name="queued_run_alert_sensor",
        job=alerts_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Runs queued past the threshold and not announced yet, as one alerts run."""
        announced: set[str] = set(json.loads(context.cursor)) if context.cursor else set()
        now = time.time()
        records = context.instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
        queued, alerts = set(), []
        for record in sorted(records, key=lambda r: r.create_timestamp):
            run = record.dagster_run
            if run.job_name == ALERTS_JOB:
                continue
            queued.add(run.run_id)
            if run.run_id in announced:
                continue
            waited = (now - queued_since(context.instance, record)) / 60
            if waited >= minutes:
                alerts.append(queued_run_alert(run.run_id, run.job_name, waited))
        new = [a["run_id"] for a in alerts]
        batch = hashlib.sha256(",".join(sorted(new)).encode()).hexdigest()[:16]
        requests = [_request(alerts, f"alert:queued:{batch}")] if alerts else []
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(sorted((announced & queued) | set(new))))

    return sensor
