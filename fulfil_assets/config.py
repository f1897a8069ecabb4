"""`fulfil.yaml`: flows, systems (URLs and the *names* of credential env vars), buffers, intervals.

Validated on load; a bad file fails with the key that is wrong and why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LinnworksCredentials(_Strict):
    """Names of the env vars that hold Linnworks secrets."""

    application_id: str = "LINNWORKS_APPLICATION_ID"
    application_secret: str = "LINNWORKS_APPLICATION_SECRET"
    token: str = "LINNWORKS_TOKEN"


class LinnworksConfig(_Strict):
    """Linnworks account."""

    base_url: str = "https://api.linnworks.net"
    credentials: LinnworksCredentials = LinnworksCredentials()
    budget_share: float = Field(0.5, gt=0, le=1)
    fulfilment_location_id: str | None = None


class WhistlConfig(_Strict):
    """Whistl file exchange."""

    drop_url: str = Field(description="local folder or sftp://user@host:port/path")
    password_env: str = "WHISTL_SFTP_PASSWORD"
    order_ref_prefix: str = "LW"


class Cin7Credentials(_Strict):
    """Names of the env vars that hold Cin7 Core secrets."""

    account_id: str = "CIN7_ACCOUNT_ID"
    application_key: str = "CIN7_APPLICATION_KEY"


class Cin7Config(_Strict):
    """Cin7 Core account."""

    base_url: str = "https://inventory.dearsystems.com/ExternalApi/v2/"
    credentials: Cin7Credentials = Cin7Credentials()
    budget_share: float = Field(0.5, gt=0, le=1)


class TokenCredentials(_Strict):
    """Name of the env var that holds an access token."""

    access_token: str


class ShopifyConfig(_Strict):
    """Shopify store."""

    base_url: str = Field(description="https://{shop}.myshopify.com/admin/api/{version}/")
    credentials: TokenCredentials = TokenCredentials(access_token="SHOPIFY_ACCESS_TOKEN")
    budget_share: float = Field(0.5, gt=0, le=1)
    leak_per_s: float = Field(2.0, gt=0)


class BigCommerceConfig(_Strict):
    """BigCommerce store."""

    base_url: str = Field(description="https://api.bigcommerce.com/stores/{store_hash}/")
    credentials: TokenCredentials = TokenCredentials(access_token="BIGCOMMERCE_ACCESS_TOKEN")
    budget_share: float = Field(0.5, gt=0, le=1)


class PeoplevoxCredentials(_Strict):
    """Names of the env vars that hold the Peoplevox login."""

    client_id: str = "PEOPLEVOX_CLIENT_ID"
    username: str = "PEOPLEVOX_USERNAME"
    password: str = "PEOPLEVOX_PASSWORD"


class PeoplevoxConfig(_Strict):
    """Peoplevox account."""

    base_url: str = Field(description="https://{host}/{ClientId}/resources/integrationservicev4.asmx")
    credentials: PeoplevoxCredentials = PeoplevoxCredentials()
    budget_share: float = Field(0.5, gt=0, le=1)


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

    order_sync_minutes: int = Field(5, ge=1)
    tracking_retry_minutes: int = Field(10, ge=1)
    despatch_poll_seconds: int = Field(30, ge=5)


class FulfilConfig(_Strict):
    """The whole of fulfil.yaml."""

    flows: list[Literal[FLOWS]] = Field(min_length=1)  # type: ignore[valid-type]
    data_dir: Path = Path("data")
    systems: SystemsConfig
    service_map: Path = Path("expectations/service_codes.csv")
    schedules: ScheduleConfig = ScheduleConfig()

    @model_validator(mode="after")
    def _systems_present(self) -> FulfilConfig:
        for flow in self.flows:
            for system in FLOW_SYSTEMS[flow]:
                if getattr(self.systems, system) is None:
                    raise ValueError(f"flow {flow} needs systems.{system}")
        return self


def config_path() -> Path:
    """`FULFIL_CONFIG`, or ./fulfil.yaml."""
    return Path(os.environ.get("FULFIL_CONFIG", "fulfil.yaml"))


def load_config(path: Path | None = None) -> FulfilConfig:
    """Read and validate fulfil.yaml; raise ConfigError naming the bad key."""
    path = path or config_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (set FULFIL_CONFIG or create fulfil.yaml)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return FulfilConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
