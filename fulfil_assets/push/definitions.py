"""The push stage's Definitions, built for the flows fulfil.yaml configures."""

import dagster as dg

from fulfil_assets.config import FulfilConfig
from fulfil_assets.push.assets import flows_to, linnworks_submissions, peoplevox_submissions, whistl_submissions
from fulfil_assets.push.cancel_assets import cancellation_assets


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """The push stage for the flows fulfil.yaml configures: one sending asset per target."""
    assets = []
    if flows_to(config, "whistl"):
        assets.append(whistl_submissions(config))
    if flows_to(config, "peoplevox"):
        assets.append(peoplevox_submissions(config))
    if flows_to(config, "linnworks"):
        assets.append(linnworks_submissions(config))
    return dg.Definitions(assets=assets + cancellation_assets(config))
