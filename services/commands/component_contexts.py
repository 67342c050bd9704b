"""`spd inspect STORE --component MODULE:INDEX`: one component from the store's harvest (with its
label, when the store has labels, and its token summary), or, for a text model without a
harvest, where it is most causally important on held-out windows."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from services.commands.component_summary import format_summary, jsonable
from spd_core.config import HFTargetConfig
from spd_core.harvest import HarvestReader, NoHarvestError
from spd_core.interp import interpretations
from spd_core.loading import load_decomposition
from spd_core.store import FactorStore, StoreError
from spd_core.text.contexts import top_contexts
from spd_core.text.windows import eval_windows


def parse_component(value: str) -> tuple[str, int]:
    """'model.layers.0.mlp.up_proj:3' -> (module, 3)."""
    module, sep, index = value.rpartition(":")
    if not sep or not module or not index.isdigit():
        raise ValueError(
            f"--component {value!r}: write MODULE:INDEX, e.g. model.layers.0.mlp.up_proj:3"
        )
    return module, int(index)


def harvest_report(store: FactorStore, module: str, index: int) -> dict[str, Any] | None:
    """The component's summary from the store's complete harvest (JSON, with "from_harvest"),
    or None when the store has no complete harvest."""
    try:
        reader = HarvestReader.open(store)
    except NoHarvestError:
        return None
    try:
        summary = reader.summary(module, index)
    except (KeyError, IndexError) as err:
        raise StoreError(str(err).strip("'\"")) from None
    report = {"from_harvest": True, **jsonable(summary)}
    report["stats"]["interpretation"] = jsonable(interpretations(reader, module)[index])
    return report


def component_report(
    store: FactorStore, component: str, top: int, n_windows: int
) -> dict[str, Any]:
    """The component's harvested summary when the store has a harvest; else (text targets only)
    its top contexts on the first `n_windows` held-out windows of the store's corpus."""
    module, index = parse_component(component)
    harvested = harvest_report(store, module, index)
    if harvested is not None:
        return harvested
    if store.target_spec.get("kind") != "hf":
        raise StoreError(
            f"--component of a toy decomposition reads its harvest, and {store.path} has none: "
            f"run `spd harvest {store.path}` first"
        )
    dec = load_decomposition(store)
    target = dec.config.target
    assert isinstance(target, HFTargetConfig)
    windows = eval_windows(dec.tokenizer, target.data, n_windows)
    try:
        contexts = top_contexts(dec.model, dec.tokenizer, windows, module, index, k=top)
    except (KeyError, IndexError) as err:
        raise StoreError(str(err).strip("'\"")) from None
    return {
        "module": module,
        "component": index,
        "corpus": target.data.corpus,
        "held_out_windows": n_windows,
        "contexts": [asdict(c) for c in contexts],
    }


def format_report(report: dict[str, Any]) -> str:
    if report.get("from_harvest"):
        return "\n".join(format_summary(report))
    lines = [
        f"component {report['component']} of {report['module']}: highest causal importance on "
        f"{report['held_out_windows']} held-out windows of {report['corpus']}",
        "   CI      window:pos  context  (the token in [brackets])",
    ]
    for c in report["contexts"]:
        text = f"{c['before']}[{c['token']}]{c['after']}".replace("\n", "⏎")
        lines.append(f"  {c['importance']:.4f}  {c['window']:>6}:{c['position']:<4} {text}")
    return "\n".join(lines)
