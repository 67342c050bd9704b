"""`/d/{name}`: the target and recipe, the stored evaluation metrics, the training curves as
plots, and the modules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from markupsafe import Markup

from services.explorer.rpc import Rpc
from services.explorer.state import ExplorerState
from services.explorer.svg_plots import bar_chart, line_chart
from services.explorer.views.home import harvested, module_rows
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb

RECIPE_KEYS = (
    "steps",
    "batch_size",
    "output_loss_type",
    "ci_fn_type",
    "sampling",
    "n_mask_samples",
    "use_delta_component",
    "faithfulness_warmup_steps",
)
"""Config fields the recipe summary shows (the whole config is below it)."""


def recipe(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, value) of the recipe's main settings and each loss term's coefficient."""
    rows = [(key, str(config[key])) for key in RECIPE_KEYS if key in config]
    for term in config.get("loss_metric_configs") or []:
        rows.append((f"loss {term.get('classname')}", f"coeff {term.get('coeff')}"))
    return rows


def metric_groups(metrics: Mapping[str, float]) -> list[tuple[str, list[tuple[str, float]]]]:
    """Metrics grouped by the part of their name before the first '/' (memory figures last)."""
    groups: dict[str, list[tuple[str, float]]] = {}
    for key in sorted(metrics):
        head = key.split("/", 1)[0] if "/" in key else "run"
        groups.setdefault(head, []).append((key, metrics[key]))
    return sorted(groups.items(), key=lambda g: (g[0] == "memory", g[0]))


def curve_plots(curves: Mapping[str, np.ndarray]) -> list[Markup]:
    """Loss terms (log scale), L0 per module, and any evaluation curves, against step."""
    if "step" not in curves or len(curves["step"]) == 0:
        return []
    steps = curves["step"].tolist()

    def series(prefix: str) -> dict[str, tuple[list, list]]:
        picked = {}
        for key, values in sorted(curves.items()):
            if key.startswith(prefix) and key != "step":
                ok = ~np.isnan(values)
                picked[key] = (np.asarray(steps)[ok].tolist(), values[ok].tolist())
        return picked

    plots = []
    for prefix, title, log in (
        ("loss/", "loss terms", True),
        ("l0/", "L0 (components important per input)", False),
        ("eval/", "evaluation", False),
    ):
        found = series(prefix)
        if found:
            plots.append(line_chart(found, title, x_label="step", log_y=log))
    return plots


async def decomposition(rpc: Rpc, state: ExplorerState, name: str) -> dict:
    d = await rpc.call("GetDecomposition", pb.GetDecompositionRequest(name=name))
    curves = await state.curves(name)
    modules = module_rows(d)
    l0 = [m for m in modules if m.l0 is not None]
    config = json.loads(d.config_json) if d.config_json else {}
    return {
        "d": d,
        "kind": "language model" if d.text_model else "toy",
        "modules": modules,
        "harvested": await harvested(rpc, name),
        "recipe": recipe(config),
        "config_json": json.dumps(config, indent=2, sort_keys=True),
        "metric_groups": metric_groups(dict(d.metrics)),
        "curve_plots": curve_plots(curves),
        "l0_plot": bar_chart([m.l0 for m in l0], "L0 by module", [m.name for m in l0])
        if l0
        else None,
    }
