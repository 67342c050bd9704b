"""The one output format of every benchmark script: a JSON line per figure."""

from __future__ import annotations

import json


def emit(name: str, value: float, unit: str = "") -> None:
    """Print {"name", "value", "unit"}: ints (and bools) as ints, other numbers to 7 significant
    digits (enough for MMCS 0.9999994, and a 0.45 ms step in seconds keeps its digits)."""
    number = int(value) if isinstance(value, int) else float(f"{float(value):.7g}")
    print(json.dumps({"name": name, "value": number, "unit": unit}), flush=True)
