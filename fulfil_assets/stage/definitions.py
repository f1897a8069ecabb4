"""The stage folder's Definitions, built for the systems fulfil.yaml configures."""

from fulfil_assets.stage.assets import build_defs

__all__ = ["build_defs"]
