"""The alert webhook: one JSON POST per alert. Its URL is a secret (a Slack or Teams URL carries its token), so it
comes from an environment variable and never appears in an error, a log line or metadata."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from resources.http import ApiClient


class WebhookClient(ApiClient):
    """POSTs alerts; errors name the webhook, never its URL."""

    system = "alert webhook"

    def post(self, body: dict[str, Any], key: str) -> None:
        """Send one alert; `key` travels as `Idempotency-Key` so that a receiver can drop a repeat."""
        self.request("POST", self.base_url, "POST alert", effect=True, json=body, headers={"Idempotency-Key": key})


class AlertWebhook(dg.ConfigurableResource):
    """The webhook alerts go to (the URL from an environment variable)."""

    url: str = Field(description="the webhook's URL")
    timeout_s: float = 10.0

    def get_client(self) -> WebhookClient:
        """A client for this webhook."""
        return WebhookClient(self.url, timeout_s=self.timeout_s, max_attempts=3)
