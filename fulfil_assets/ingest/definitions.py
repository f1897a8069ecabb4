import dagster as dg

from fulfil_assets.config import FulfilConfig
from fulfil_assets.ingest.assets import RAW_ASSETS


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """Raw assets for every system fulfil.yaml configures."""
    return dg.Definitions(assets=[asset for name, asset in RAW_ASSETS.items() if getattr(config.systems, name)])
