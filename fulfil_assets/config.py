"""`fulfil.yaml`: flows, systems (URLs and the *names* of credential env vars), buffers, intervals.

Validated on load; a bad file fails with the key that is wrong and why.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from resources.limits import STOCK_BATCH_MAXIMUM

FLOWS = ("linnworks_whistl", "cin7_whistl", "bigcommerce_whistl", "linnworks_peoplevox", "shopify_linnworks")
FLOW_SYSTEMS = {
    "linnworks_whistl": ("linnworks", "whistl"),
    "cin7_whistl": ("cin7", "whistl"),
    "bigcommerce_whistl": ("bigcommerce", "whistl"),
    "linnworks_peoplevox": ("linnworks", "peoplevox"),
    "shopify_linnworks": ("shopify", "linnworks"),
}


class ConfigError(ValueError):
    """fulfil.yaml is missing or invalid."""


def _http_url(value: str) -> str:
    """An API base URL: http(s) with a host, nothing else."""
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"{value!r} must start with https:// (or http:// for a local emulator)")
    if not parsed.hostname:
        raise ValueError(f"{value!r} has no host")
    return value


PASSWORD_IN_URL = re.compile(r"^([^:/?#]*:?//?[^:@/]*):[^@/]*@")  # `scheme://user:password@`, even misspelt


def _drop_url(value: str) -> str:
    """A file exchange: `sftp://user@host[:port]/path`, `file:///path`, or an absolute local folder. Anything else
    is refused: `sftp//user@host/` (a colon missing) must not quietly become a folder under the working directory,
    and a password belongs in the environment, never in the file (nor in the refusal: it is never repeated)."""
    shown = repr(PASSWORD_IN_URL.sub(r"\1:***@", value))
    if shown != repr(value):
        raise ValueError(
            f"{shown} holds a password: remove it from the URL and put it in the environment variable named by "
            "systems.whistl.password_env"
        )
    parsed = urlparse(value)
    if parsed.scheme == "sftp":
        if not parsed.hostname or not parsed.username:
            raise ValueError(f"{shown} needs a user and a host: sftp://user@host:port/path")
        try:
            parsed.port  # noqa: B018 - a bad port raises here
        except ValueError:
            raise ValueError(f"{shown} has a port that is not a number from 1 to 65535") from None
    elif parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{shown}: a file:// URL names a folder on this machine (file:///path)")
    elif "://" in value or (parsed.scheme and len(parsed.scheme) > 1):
        # `stfp://...` or `ftp:...`: a typo must not quietly become a local folder of that name.
        raise ValueError(f"{shown}: unknown scheme {parsed.scheme!r}; use sftp://user@host:port/path or a folder")
    elif not Path(value).is_absolute():
        raise ValueError(f"{shown} is neither a URL (sftp://user@host:port/path, file:///path) nor an absolute folder")
    return value


def _shopify_url(value: str) -> str:
    """A Shopify Admin API base URL names its API version (`.../admin/api/2026-10/`): Shopify answers an
    unversioned path with its oldest supported version, whose fields may differ."""
    if not re.search(r"/admin/api/(\d{4}-\d{2}|unstable)/?$", urlparse(value).path):
        raise ValueError(
            f"{value!r} must end in /admin/api/<version>/, e.g. https://shop.myshopify.com/admin/api/2026-10/"
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
ShopifyUrl = Annotated[str, AfterValidator(_http_url), AfterValidator(_shopify_url)]
DropUrl = Annotated[str, AfterValidator(_drop_url)]
# Every N minutes as cron can express it exactly: N divides an hour, or N is whole hours that divide a day.
EVERY_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440)


def _every(value: int) -> int:
    if value not in EVERY_MINUTES:
        raise ValueError(f"{value} minutes cannot run evenly on a clock; use one of {list(EVERY_MINUTES)}")
    return value


Minutes = Annotated[int, AfterValidator(_every)]


def every_minutes_cron(minutes: int, offset: int = 0) -> str:
    """The cron schedule for 'every `minutes` minutes' (a value of `EVERY_MINUTES`), starting `offset` minutes past
    the interval's boundary (below `minutes`, and below 60)."""
    if minutes < 60:
        return f"*/{minutes} * * * *" if offset == 0 else f"{offset}-59/{minutes} * * * *"
    hours = minutes // 60
    return f"{offset} * * * *" if hours == 1 else (f"{offset} 0 * * *" if hours == 24 else f"{offset} */{hours} * * *")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LinnworksCredentials(_Strict):
    """Names of the env vars that hold Linnworks secrets."""

    application_id: str = Field("LINNWORKS_APPLICATION_ID", description="env var holding the application id")
    application_secret: str = Field(
        "LINNWORKS_APPLICATION_SECRET", description="env var holding the application secret"
    )
    token: str = Field("LINNWORKS_TOKEN", description="env var holding the installation token")


class LinnworksConfig(_Strict):
    """Linnworks account."""

    base_url: HttpUrl = Field("https://api.linnworks.net", description="Linnworks' API (its auth answers the server)")
    credentials: LinnworksCredentials = LinnworksCredentials()
    budget_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the share of the account's published rate limit fulfil may use (other apps use the rest)",
    )
    timeout_s: float = Field(30.0, gt=0, le=300, description="seconds before a call is given up")


class WhistlConfig(_Strict):
    """Whistl file exchange."""

    drop_url: DropUrl = Field(description="Whistl's file exchange: its in/ and out/ folders")
    password_env: str = Field("WHISTL_SFTP_PASSWORD", description="env var holding the SFTP password")
    host_key: str | None = Field(
        None,
        pattern=r"^SHA256:[A-Za-z0-9+/]{43}$",
        description="the SFTP server's host key fingerprint as `ssh-keygen -lf` prints it (SHA256:...), from Whistl",
    )
    known_hosts: str | None = Field(
        None, description="or: an OpenSSH known_hosts file (absolute path) that lists the SFTP server's key"
    )
    snapshot_min_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="a stock file with fewer usable rows than this share of the last good one is "
        "quarantined, not applied",
    )
    ack_grace_minutes: int = Field(
        10,
        ge=0,
        le=1440,
        description="how long an unconfirmed upload waits for Whistl's acknowledgement before it is sent again",
    )

    @model_validator(mode="after")
    def _host_key_known(self) -> WhistlConfig:
        if self.drop_url.startswith("sftp://") and not (self.host_key or self.known_hosts):
            raise ValueError(
                "an sftp:// drop_url needs host_key (the server's SHA256 fingerprint, from Whistl) or known_hosts, "
                "so that fulfil never sends the password or an order to a server that is not Whistl's"
            )
        if self.known_hosts and not Path(self.known_hosts).is_absolute():
            raise ValueError(f"known_hosts {self.known_hosts!r} must be an absolute path")
        return self


class Cin7Credentials(_Strict):
    """Names of the env vars that hold Cin7 Core secrets."""

    account_id: str = Field("CIN7_ACCOUNT_ID", description="env var holding the api-auth-accountid")
    application_key: str = Field("CIN7_APPLICATION_KEY", description="env var holding the api-auth-applicationkey")


class Cin7Config(_Strict):
    """Cin7 Core account."""

    base_url: HttpUrl = Field("https://inventory.dearsystems.com/ExternalApi/v2/", description="Cin7 Core's API")
    credentials: Cin7Credentials = Cin7Credentials()
    budget_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the share of the account's published rate limit fulfil may use (other apps use the rest)",
    )


class TokenCredentials(_Strict):
    """Name of the env var that holds an access token."""

    access_token: str = Field(description="env var holding the access token")


class ShopifyConfig(_Strict):
    """Shopify store."""

    base_url: ShopifyUrl = Field(description="https://{shop}.myshopify.com/admin/api/{version}/")
    credentials: TokenCredentials = TokenCredentials(access_token="SHOPIFY_ACCESS_TOKEN")
    budget_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the share of the account's published rate limit fulfil may use (other apps use the rest)",
    )
    leak_per_s: float = Field(
        2.0, gt=0, description="REST calls a second the store's bucket leaks (2 on standard plans, 20 on Plus)"
    )


class BigCommerceConfig(_Strict):
    """BigCommerce store."""

    base_url: HttpUrl = Field(description="https://api.bigcommerce.com/stores/{store_hash}/")
    credentials: TokenCredentials = TokenCredentials(access_token="BIGCOMMERCE_ACCESS_TOKEN")
    budget_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the share of the account's published rate limit fulfil may use (other apps use the rest)",
    )


class PeoplevoxCredentials(_Strict):
    """Names of the env vars that hold the Peoplevox login."""

    client_id: str = Field("PEOPLEVOX_CLIENT_ID", description="env var holding the client id")
    username: str = Field("PEOPLEVOX_USERNAME", description="env var holding the user name")
    password: str = Field("PEOPLEVOX_PASSWORD", description="env var holding the password")
    callback_token: str = Field(
        "PEOPLEVOX_CALLBACK_TOKEN", description="env var holding the secret Peoplevox sends back with each callback"
    )


class PeoplevoxConfig(_Strict):
    """Peoplevox account."""

    base_url: HttpUrl = Field(description="https://{host}/{ClientId}/resources/integrationservicev4.asmx")
    credentials: PeoplevoxCredentials = PeoplevoxCredentials()
    budget_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the share of the account's published rate limit fulfil may use (other apps use the rest)",
    )
    callback_url: HttpUrl | None = Field(
        None,
        description="where Peoplevox posts despatch events (`fulfil peoplevox-callbacks` listens there): each one "
        "starts a despatch run at once instead of at the next poll",
    )


class SystemsConfig(_Strict):
    """Per-system settings; only the systems of the chosen flows are required."""

    linnworks: LinnworksConfig | None = None
    whistl: WhistlConfig | None = None
    cin7: Cin7Config | None = None
    shopify: ShopifyConfig | None = None
    bigcommerce: BigCommerceConfig | None = None
    peoplevox: PeoplevoxConfig | None = None


class ScheduleConfig(_Strict):
    """How often the scheduled jobs run."""

    order_sync_minutes: Minutes = Field(5, description="how often each order system's orders are read and sent on")
    cancellation_minutes: Minutes = Field(
        1, description="how often cancellations are read from the order systems and sent on, to beat picking"
    )
    tracking_retry_minutes: Minutes = Field(
        10,
        description="how often each order system's tracking still due is posted again, and the warehouses' despatch "
        "backlog checked",
    )
    tracking_in_despatch_seconds: int = Field(
        20,
        ge=1,
        le=3600,
        description="how long a despatch run posts to one order system before it leaves the rest to that system's "
        "own tracking job, asked for at once (so an order system slow at its rate limit, as Cin7 is, never holds the "
        "tracking of the others)",
    )
    tracking_wait_minutes: int = Field(
        30, ge=1, le=10080, description="a despatch whose tracking has not reached its order system this long is red"
    )
    peoplevox_despatch_minutes: Minutes = Field(
        1,
        description="how often a Peoplevox despatch run starts regardless (a backstop: peoplevox_despatch_sensor asks "
        "Peoplevox every despatch_poll_seconds and starts one as soon as something was despatched)",
    )
    despatch_poll_seconds: int = Field(
        30, ge=5, le=3600, description="how often Whistl's out/ folder and Peoplevox's despatches are looked at"
    )
    despatch_settle_seconds: int = Field(
        10, ge=0, le=3600, description="a Whistl file is taken in once unchanged this long (or since the last poll)"
    )
    despatch_backlog_minutes: int = Field(
        5,
        ge=1,
        le=10080,
        description="a despatch waiting at the warehouse this long, not yet taken in by fulfil (a Whistl `shp_` "
        "file in out/, a Peoplevox despatch not read), turns no_despatch_backlog red",
    )


class ReconcileConfig(_Strict):
    """When an order counts as stuck between systems (the `orders_stuck` table and its check)."""

    every_minutes: Minutes = Field(15, description="how often the reconciled tables are rebuilt")
    unsent_minutes: int = Field(
        30, ge=0, le=10080, description="a paid order not confirmed at the warehouse this long after it was placed"
    )
    despatch_sla_hours: int = Field(
        48, ge=0, le=720, description="an order at the warehouse this long without a despatch"
    )
    oms_update_minutes: int = Field(
        30, ge=0, le=10080, description="a despatch whose tracking the order system has not confirmed this long"
    )
    exception_hours: int = Field(24, ge=0, le=2160, description="an exception left open this long")
    stuck_warn: int = Field(1, ge=1, description="stuck orders that turn no_order_stuck_between_systems amber")
    stuck_error: int = Field(25, ge=1, description="stuck orders that turn it red")
    backlog_warn: int = Field(
        1, ge=1, description="exceptions open past exception_hours that turn exception_backlog amber"
    )
    backlog_error: int = Field(50, ge=1, description="exceptions open past exception_hours that turn it red")
    oversell_warn_units: int = Field(1, ge=1, description="units order systems show above what may be sold: amber")
    oversell_error_units: int = Field(1, ge=1, description="units above what may be sold: red (default: any)")
    latency_p95_warn_seconds: int = Field(300, ge=1, description="today's p95, despatch to order system updated: amber")
    latency_p95_error_seconds: int = Field(1800, ge=1, description="today's p95: red")


class AlertsConfig(_Strict):
    """Where failed runs and red checks are announced: a webhook (Slack, Teams or your own receiver) that gets one
    JSON POST per alert, each once (its `Idempotency-Key` header lets a receiver drop a repeat)."""

    webhook_url_env: str = Field(
        "FULFIL_ALERT_WEBHOOK_URL", description="environment variable holding the webhook URL (it is a secret)"
    )
    run_failures: bool = Field(True, description="alert on every failed run")
    checks: bool = Field(True, description="alert on every asset check turning red (errors and warnings)")
    timeout_s: float = Field(10.0, gt=0, le=120, description="how long a post may take")
    queued_run_minutes: int = Field(
        5,
        ge=1,
        le=10080,
        description="alert once on each run that has waited in the run queue longer than this, not started",
    )


class RouteConfig(_Strict):
    """Which of an order system's orders a flow takes, when that system feeds more than one flow."""

    locations: list[str] = Field(
        min_length=1, description="the order system's fulfilment location ids whose orders this flow takes"
    )


class StockConfig(_Strict):
    """How one flow keeps the order system's sellable stock in line with the warehouse."""

    buffer: int = Field(
        0, ge=0, le=100000, description="units held back from sale per SKU (stock_buffers.csv overrides)"
    )
    every_minutes: Minutes = Field(15, description="how often the flow's stock job runs")
    batch: int | None = Field(
        None,
        ge=1,
        description="SKUs per call, at most the order system's maximum (the default): BigCommerce 2000, Shopify 250, "
        "Linnworks and Cin7 500",
    )


class FulfilConfig(_Strict):
    """The whole of fulfil.yaml."""

    flows: list[Literal[FLOWS]] = Field(min_length=1, description="the order flows fulfil runs")  # type: ignore[valid-type]
    systems: SystemsConfig
    schedules: ScheduleConfig = ScheduleConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    alerts: AlertsConfig | None = Field(None, description="announce failed runs and red checks to a webhook")
    modes: dict[Literal[FLOWS], Literal["live", "shadow"]] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="per flow: live (default) sends; shadow records every effect it would send and sends nothing",
    )
    stock: dict[Literal[FLOWS], StockConfig] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="per flow: stock buffer and schedule (defaults: 0 units, every 15 minutes)"
    )
    routes: dict[Literal[FLOWS], RouteConfig] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="per flow: the fulfilment locations whose orders it takes, where one order system feeds "
        "several flows (each order belongs to exactly one flow)",
    )

    @model_validator(mode="after")
    def _systems_present(self) -> FulfilConfig:
        for flow in self.flows:
            for system in FLOW_SYSTEMS[flow]:
                if getattr(self.systems, system) is None:
                    raise ValueError(f"flow {flow} needs systems.{system}")
        doubled = sorted({f for f in self.flows if self.flows.count(f) > 1})
        if doubled:
            raise ValueError(f"flows: {', '.join(doubled)} listed twice")
        for key, named in (("modes", self.modes), ("routes", self.routes), ("stock", self.stock)):
            for flow in named:
                if flow not in self.flows:
                    raise ValueError(f"{key}.{flow}: not one of the configured flows {list(self.flows)}")
        for flow, settings in self.stock.items():
            most = STOCK_BATCH_MAXIMUM[FLOW_SYSTEMS[flow][0]]
            if settings.batch is not None and settings.batch > most:
                raise ValueError(
                    f"stock.{flow}.batch: {settings.batch} is more than the {FLOW_SYSTEMS[flow][0]} API takes in one "
                    f"call ({most}); leave it out for the maximum"
                )
        for oms in {FLOW_SYSTEMS[f][0] for f in self.flows}:
            feeds = [f for f in self.flows if FLOW_SYSTEMS[f][0] == oms]
            unrouted = [f for f in feeds if f not in self.routes]
            if len(feeds) > 1 and len(unrouted) > 1:
                raise ValueError(
                    f"{oms} orders feed {', '.join(feeds)}: give routes.<flow>.locations for all but one of them, "
                    "so that each order belongs to exactly one flow"
                )
            taken = [loc for f in feeds for loc in (self.routes[f].locations if f in self.routes else [])]
            twice = sorted({loc for loc in taken if taken.count(loc) > 1})
            if twice:
                raise ValueError(f"routes: location {', '.join(twice)} is given to more than one {oms} flow")
        return self


def flow_of(oms: str, wms: str) -> str:
    """The flow name of orders going from `oms` to `wms`."""
    return f"{oms}_{wms}"


def target_of(flow: str) -> str:
    """The system a flow sends its orders to (a WMS, or Linnworks for `shopify_linnworks`)."""
    return FLOW_SYSTEMS[flow][1]


def whistl_sources(config: FulfilConfig) -> list[str]:
    """The order systems whose configured flow sends orders to Whistl."""
    return [FLOW_SYSTEMS[f][0] for f in config.flows if FLOW_SYSTEMS[f][1] == "whistl"]


def stock_config(config: FulfilConfig, flow: str) -> StockConfig:
    """The flow's stock settings (the defaults when fulfil.yaml gives none)."""
    return config.stock.get(flow, StockConfig())  # type: ignore[call-overload]


def is_shadow(config: FulfilConfig, flow: str) -> bool:
    """Whether `flow` runs in shadow mode."""
    return config.modes.get(flow, "live") == "shadow"  # type: ignore[call-overload]


def whistl_in_shadow(config: FulfilConfig) -> bool:
    """Whether every configured flow to Whistl is in shadow mode: fulfil then only reads Whistl's `out/` folder
    (files are judged and recorded, never moved, renamed or written beside), leaving it as it found it."""
    flows = [f for f in config.flows if FLOW_SYSTEMS[f][1] == "whistl"]
    return bool(flows) and all(is_shadow(config, f) for f in flows)


def config_path() -> Path:
    """`FULFIL_CONFIG`, or ./fulfil.yaml."""
    return Path(os.environ.get("FULFIL_CONFIG", "fulfil.yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last silently)."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (fulfil does not use it; check the spelling)"
    return str(err["msg"]).removeprefix("Value error, ")


def load_config(path: Path | None = None) -> FulfilConfig:
    """Read and validate fulfil.yaml; raise ConfigError naming the file, the bad key and why."""
    path = path or config_path()
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (set FULFIL_CONFIG or create fulfil.yaml)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return FulfilConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {_message(err)}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
