import dagster as dg

from fulfil_assets.config import FulfilConfig
from fulfil_assets.ingest.assets import RAW_ASSETS, wms_stock


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """Raw assets for every order/stock system the chosen flows use, and Whistl's stock snapshot."""
    systems = [name for name in RAW_ASSETS if getattr(config.systems, name) is not None]
    return dg.Definitions(assets=[RAW_ASSETS[name] for name in systems] + [wms_stock])
