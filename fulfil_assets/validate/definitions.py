import dagster as dg

from fulfil_assets.config import FulfilConfig
from fulfil_assets.validate.assets import build_validation


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """The validation stage for the targets of the configured flows."""
    return dg.Definitions(assets=[build_validation(config)])
