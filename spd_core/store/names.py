"""Mapping arbitrary parameter/curve names to valid Zarr node names and back."""

from __future__ import annotations

from urllib.parse import quote

NAME_ATTR = "name"


def node_name(name: str) -> str:
    """A valid, injective Zarr v3 node name for `name` (kept as-is when already valid).

    Dots are fine in Zarr v3 names; only '/', '%', '.'/'..' and a leading '__' are escaped.
    The original name is also stored in the node's `name` attribute, which readers use.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"names must be non-empty strings, got {name!r}")
    escaped = quote(name, safe="", encoding="utf-8") if ("/" in name or "%" in name) else name
    if escaped in (".", ".."):
        escaped = escaped.replace(".", "%2E")
    if escaped.startswith("__"):
        escaped = "%5F" + escaped[1:]
    return escaped
