"""The code version recorded in new stores."""

from __future__ import annotations

from importlib import metadata


def default_code_version() -> str:
    """``spd <version>`` of the installed package, or ``spd unknown`` when not installed."""
    try:
        return f"spd {metadata.version('spd')}"
    except metadata.PackageNotFoundError:
        return "spd unknown"
