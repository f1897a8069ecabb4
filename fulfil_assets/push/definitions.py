"""The push stage's Definitions, built for the flows fulfil.yaml configures."""

from fulfil_assets.push.assets import build_defs

__all__ = ["build_defs"]
