"""`spd inspect STORE --component MODULE:INDEX`: where one component is most causally important."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from spd_core.config import HFTargetConfig
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


def component_report(
    store: FactorStore, component: str, top: int, n_windows: int
) -> dict[str, Any]:
    """The top contexts of a component on the first `n_windows` held-out windows of the store's
    corpus (text targets only)."""
    module, index = parse_component(component)
    if store.target_spec.get("kind") != "hf":
        raise StoreError("--component needs a store of a text model (target kind 'hf')")
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
    lines = [
        f"component {report['component']} of {report['module']}: highest causal importance on "
        f"{report['held_out_windows']} held-out windows of {report['corpus']}",
        "   CI      window:pos  context  (the token in [brackets])",
    ]
    for c in report["contexts"]:
        text = f"{c['before']}[{c['token']}]{c['after']}".replace("\n", "⏎")
        lines.append(f"  {c['importance']:.4f}  {c['window']:>6}:{c['position']:<4} {text}")
    return "\n".join(lines)
