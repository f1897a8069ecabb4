"""The stage folder's Definitions, built for the systems fulfil.yaml configures."""

import dagster as dg

from fulfil_assets.config import FulfilConfig
from fulfil_assets.stage.assets import stage_assets


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """Staged orders, order lines and stock of every configured system, and Peoplevox's despatch lines."""
    return dg.Definitions(assets=stage_assets(config))
