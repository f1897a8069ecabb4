"""Incremental cursors as the systems want them back."""

from __future__ import annotations

from typing import Any


def iso(value: Any) -> str:
    """A cursor's last value as ISO 8601 text (dlt may hand it back as a datetime or as the string it stored)."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
