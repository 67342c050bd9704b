"""The JSON line every benchmark script prints (benchmarks/jsonl.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "jsonl", Path(__file__).parents[1] / "benchmarks" / "jsonl.py"
)
jsonl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jsonl)


def test_emit_keeps_seven_significant_digits_and_ints(capsys):
    jsonl.emit("mmcs", 1 / 3)
    jsonl.emit("step", 0.000451234567, "s")
    jsonl.emit("alive", 40, "count")
    jsonl.emit("check", True, "bool")
    assert capsys.readouterr().out.splitlines() == [  # the text: 40, not 40.0
        '{"name": "mmcs", "value": 0.3333333, "unit": ""}',
        '{"name": "step", "value": 0.0004512346, "unit": "s"}',
        '{"name": "alive", "value": 40, "unit": "count"}',
        '{"name": "check", "value": 1, "unit": "bool"}',
    ]
