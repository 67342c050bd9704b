"""Figures of a decomposition (the ones readers of the SPD paper expect), as PNG files.

Pure matplotlib on the Agg canvas: figures are built with the object API (`Figure` +
`FigureCanvasAgg`), never through pyplot, so importing this module does not touch the global
backend of a notebook or a server.

- `plot_causal_importances`: CI on the one-hot inputs, columns permuted to the identity or the
  dense pattern, components that are never important hidden (`heatmap_columns`).
- `plot_tms_columns`: the TMS target's columns W[:, j] next to each significant subcomponent's
  column V[c, j]·U[c].
- `plot_training_curves`: loss terms (log scale) and L0 per module over training.
- `write_store_figures`: all of the above for a factor store.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spd_core.config import ConfigError
from spd_core.eval.metrics.ci_patterns import dense_permutation, identity_permutation
from spd_core.eval.metrics.ground_truth import mmcs_ml2r, subcomponent_columns
from spd_core.store import FactorStore, StoreError

Pattern = Literal["identity", "dense"]

#: CI above this on some input makes a component "shown" in the heat-maps.
SHOW_THRESHOLD = 0.1
#: Annotate heat-map cells with their value when the shown matrix has at most this many cells.
_ANNOTATE_MAX_CELLS = 150
_DPI = 120


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def file_stem(module: str) -> str:
    """A module name made safe for a file name (``layers.0.mlp_in`` stays as it is)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", module)


# --------------------------------------------------------------------------------------------
# Causal-importance heat-maps
# --------------------------------------------------------------------------------------------


def heatmap_columns(
    ci: np.ndarray | torch.Tensor,
    pattern: Pattern,
    threshold: float = SHOW_THRESHOLD,
    n_identity_rows: int | None = None,
) -> tuple[np.ndarray, int]:
    """Which columns of `ci` (n_inputs, C) a heat-map shows, in display order, and how many
    it hides.

    Columns are permuted like the CI-pattern metrics do: ``identity`` puts each input's most
    important component on the diagonal (Hungarian, on the first `n_identity_rows` rows if
    given), ``dense`` sorts by total CI mass. Columns whose CI never exceeds `threshold` are then
    dropped, keeping the order of the rest.
    """
    t = torch.as_tensor(np.asarray(ci, dtype=np.float32))
    if t.ndim != 2:
        raise ValueError(f"ci must be (n_inputs, C), got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        return np.zeros(0, dtype=np.int64), 0
    if pattern == "identity":
        rows = t if n_identity_rows is None else t[:n_identity_rows]
        order = identity_permutation(rows).numpy()
    elif pattern == "dense":
        order = dense_permutation(t).numpy()
    else:
        raise ValueError(f"pattern must be 'identity' or 'dense', got {pattern!r}")
    shown = (t > threshold).any(0).numpy()
    keep = np.asarray([c for c in order if shown[c]], dtype=np.int64)
    return keep, int(t.shape[1] - keep.size)


def _component_ticks(ax, columns: np.ndarray, max_labels: int = 40) -> None:
    n = columns.size
    step = max(1, math.ceil(n / max_labels))
    pos = np.arange(0, n, step)
    ax.set_xticks(pos, [str(int(columns[p])) for p in pos], rotation=90 if n > 12 else 0)


def _input_ticks(ax, n_inputs: int, max_labels: int = 40) -> None:
    step = max(1, math.ceil(n_inputs / max_labels))
    pos = np.arange(0, n_inputs, step)
    ax.set_yticks(pos, [str(int(p)) for p in pos])


def plot_causal_importances(
    ci: np.ndarray | torch.Tensor,
    path: str | Path,
    *,
    module: str,
    pattern: Pattern = "identity",
    threshold: float = SHOW_THRESHOLD,
    n_identity_rows: int | None = None,
    input_scale: float = 0.75,
) -> Path:
    """Heat-map of causal importances `ci` (n_inputs, C) on one-hot inputs: rows are inputs,
    columns the components ever above `threshold`, permuted to `pattern`; colour scale 0..1."""
    values = np.asarray(torch.as_tensor(ci).detach().float().cpu().numpy())
    n_inputs, C = values.shape
    columns, hidden = heatmap_columns(values, pattern, threshold, n_identity_rows)
    shown = values[:, columns]

    width = min(16.0, max(6.5, 2.5 + 0.32 * max(columns.size, 1)))
    height = min(14.0, max(3.6, 2.0 + 0.3 * n_inputs))
    fig = _new_figure(width, height)
    ax = fig.add_subplot()
    order_text = (
        "largest CI per input on the diagonal" if pattern == "identity" else "by total CI mass"
    )
    fig.suptitle(f"causal importances of {module}", fontsize=12)
    ax.set_title(
        f"inputs: one-hot × {input_scale:g}\ncolumns: {pattern} order ({order_text})",
        fontsize=9,
    )
    ax.set_ylabel("input feature (one-hot)")
    note = (
        f"{columns.size} of {C} components shown; {hidden} hidden (CI ≤ {threshold:g} "
        "on every input)"
    )
    if columns.size == 0:
        ax.text(
            0.5,
            0.5,
            f"no component has CI > {threshold:g}\non any one-hot input",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_xticks([])
        _input_ticks(ax, n_inputs)
        ax.set_ylim(n_inputs - 0.5, -0.5)
        ax.set_xlabel(note)
        return _save(fig, path)

    image = ax.imshow(
        shown, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest"
    )
    _component_ticks(ax, columns)
    _input_ticks(ax, n_inputs)
    ax.set_xlabel(f"component index (store row c)\n{note}")
    if shown.size <= _ANNOTATE_MAX_CELLS:
        for i in range(shown.shape[0]):
            for j in range(shown.shape[1]):
                v = shown[i, j]
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.6 else "black",
                )
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("causal importance (lower)")
    bar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# TMS: target columns vs subcomponent columns
# --------------------------------------------------------------------------------------------


@dataclass
class ColumnMatch:
    """A significant subcomponent `c`, the input `j` it writes most of, its column s = V[c,j]·U[c],
    and that column's cosine and norm ratio to the target's column W[:, j]."""

    c: int
    j: int
    column: np.ndarray
    cos: float
    norm_ratio: float


def significant_columns(
    W: np.ndarray, U: np.ndarray, V: np.ndarray, rel_tol: float = 0.1
) -> list[ColumnMatch]:
    """W (d_out, n_in), U (C, d_out), V (C, n_in). Subcomponents whose weight norm ‖u_c‖‖v_c‖
    exceeds `rel_tol` × the largest, each with the input j maximising ‖V[c, j]·U[c]‖; sorted by
    (j, c)."""
    W, U, V = (np.asarray(a, dtype=np.float64) for a in (W, U, V))
    norms = np.linalg.norm(U, axis=1) * np.linalg.norm(V, axis=1)
    if norms.size == 0 or norms.max() <= 0:
        return []
    s = subcomponent_columns(torch.from_numpy(U), torch.from_numpy(V)).numpy()  # (C, n_in, d)
    out = []
    for c in np.flatnonzero(norms > rel_tol * norms.max()):
        j = int(np.argmax(np.abs(V[c])))
        col, w = s[c, j], W[:, j]
        wn, cn = float(np.linalg.norm(w)), float(np.linalg.norm(col))
        cos = float(col @ w / ((cn + 1e-12) * (wn + 1e-12)))
        out.append(ColumnMatch(int(c), j, col, cos, cn / wn if wn > 0 else math.nan))
    return sorted(out, key=lambda m: (m.j, m.c))


def _feature_colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(j % cmap.N) for j in range(n)]


def _arrow_panel(ax, vectors, labels, colors, lim, *, ghosts=None, title="") -> None:
    """Arrows from the origin; labels only on arrows longer than 15% of the axis half-width."""
    if ghosts is not None:
        for v in ghosts:
            ax.annotate(
                "",
                xy=(v[0], v[1]),
                xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "color": "0.82", "lw": 5, "alpha": 0.9},
            )
    for v, label, color in zip(vectors, labels, colors, strict=True):
        ax.annotate(
            "",
            xy=(v[0], v[1]),
            xytext=(0, 0),
            arrowprops={"arrowstyle": "-|>", "color": color, "lw": 2},
        )
        r = math.hypot(v[0], v[1])
        if r < 0.15 * lim:
            continue
        pad = 0.07 * lim
        ax.text(
            v[0] + pad * v[0] / r,
            v[1] + pad * v[1] / r,
            label,
            color=color,
            ha="center",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.9", lw=0.8, zorder=0)
    ax.axvline(0, color="0.9", lw=0.8, zorder=0)
    ax.set_xlabel("hidden dim 0")
    ax.set_ylabel("hidden dim 1")
    ax.set_title(title, fontsize=10)


def plot_tms_columns(
    W: np.ndarray,
    U: np.ndarray,
    V: np.ndarray,
    path: str | Path,
    *,
    module: str = "linear1",
    rel_tol: float = 0.1,
) -> Path:
    """The target's columns W[:, j] (W is (n_hidden, n_features)) beside the column
    V[c, j]·U[c] of every significant subcomponent c at its input j: arrows in the plane when
    n_hidden == 2, otherwise two heat-maps with the same colour scale."""
    W, U, V = (np.asarray(a, dtype=np.float64) for a in (W, U, V))
    n_hidden, n_features = W.shape
    matches = significant_columns(W, U, V, rel_tol)
    scores = mmcs_ml2r(torch.from_numpy(U), torch.from_numpy(V), torch.from_numpy(W))
    summary = (
        f"MMCS {scores['mmcs']:.3f} ± {scores['mmcs_std']:.3f}   "
        f"ML2R {scores['ml2r']:.3f} ± {scores['ml2r_std']:.3f}   "
        f"{len(matches)} significant subcomponents for {n_features} features "
        f"(‖u_c‖‖v_c‖ > {rel_tol:g} × max)"
    )
    colors = _feature_colors(n_features)
    if n_hidden == 2:
        fig = _new_figure(11.0, 5.6)
        left, right = fig.subplots(1, 2)
        vecs = [W[:, j] for j in range(n_features)] + [m.column for m in matches]
        lim = 1.2 * max([float(np.linalg.norm(v)) for v in vecs] + [1e-6])
        _arrow_panel(
            left,
            [W[:, j] for j in range(n_features)],
            [f"{j}" for j in range(n_features)],
            colors,
            lim,
            title=f"target {module}.weight columns W[:, j] (label j)",
        )
        _arrow_panel(
            right,
            [m.column for m in matches],
            [f"c{m.c}" for m in matches],
            [colors[m.j] for m in matches],
            lim,
            ghosts=[W[:, j] for j in range(n_features)],
            title="subcomponent columns V[c, j]·U[c] (label c, colour j; grey: target)",
        )
    else:
        fig = _new_figure(min(18.0, 4.0 + 0.5 * (n_features + len(matches))), 5.2)
        left, right = fig.subplots(1, 2, width_ratios=[max(n_features, 1), max(len(matches), 1)])
        S = np.stack([m.column for m in matches], axis=1) if matches else np.zeros((n_hidden, 0))
        vmax = max(float(np.abs(W).max()), float(np.abs(S).max()) if S.size else 0.0, 1e-6)
        kw = {"cmap": "RdBu_r", "vmin": -vmax, "vmax": vmax, "aspect": "auto"}
        image = left.imshow(W, interpolation="nearest", **kw)
        left.set_title(f"target {module}.weight: column j = W[:, j]", fontsize=10)
        left.set_xlabel("input feature j")
        left.set_ylabel("hidden dim")
        _component_ticks(left, np.arange(n_features))
        if matches:
            right.imshow(S, interpolation="nearest", **kw)
            step = max(1, math.ceil(len(matches) / 40))
            pos = np.arange(0, len(matches), step)
            right.set_xticks(pos, [f"{matches[p].j}/c{matches[p].c}" for p in pos], rotation=90)
        else:
            right.text(0.5, 0.5, "no significant subcomponent", ha="center", va="center")
        right.set_title("subcomponent columns V[c, j]·U[c], sorted by j", fontsize=10)
        right.set_xlabel("input feature j / component c")
        right.set_yticks([])
        fig.colorbar(image, ax=[left, right], fraction=0.03, pad=0.02, label="weight")
    fig.suptitle(f"TMS {module}: target columns vs subcomponent columns\n{summary}", fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------


def plot_training_curves(curves: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Loss terms (``loss/*``, log scale) and L0 (``l0/*``: per module, group, total) against
    the step."""
    steps = np.asarray(curves["step"])
    losses = {k: np.asarray(v, dtype=float) for k, v in curves.items() if k.startswith("loss/")}
    l0 = {k: np.asarray(v, dtype=float) for k, v in curves.items() if k.startswith("l0/")}
    marker = "o" if steps.size <= 30 else None
    fig = _new_figure(12.0, 4.6)
    left, right = fig.subplots(1, 2)
    for name, values in sorted(losses.items()):
        positive = np.where(values > 0, values, np.nan)
        style = "--" if name == "loss/total" else "-"
        left.plot(steps, positive, style, marker=marker, label=name.removeprefix("loss/"))
    left.set_yscale("log")
    left.set_title("loss terms, unweighted (total: weighted sum; log scale)", fontsize=10)
    left.set_xlabel("step")
    left.set_ylabel("loss")
    for name, values in sorted(l0.items()):
        style = "--" if name == "l0/total" else "-"
        right.plot(steps, values, style, marker=marker, label=name.removeprefix("l0/"))
    right.set_title("L0: mean #components with CI > threshold per input", fontsize=10)
    right.set_xlabel("step")
    right.set_ylabel("L0")
    for ax, items in ((left, losses), (right, l0)):
        if items:
            ax.legend(fontsize=8)
        else:
            ax.text(
                0.5, 0.5, "no curves recorded", ha="center", va="center", transform=ax.transAxes
            )
        ax.grid(alpha=0.3)
    fig.suptitle("training curves", fontsize=12)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# All figures of a store
# --------------------------------------------------------------------------------------------


@dataclass
class FigureReport:
    """Paths written and, for figures that could not be drawn, why (figure name -> reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def ci_pattern_of(module: str, config: Mapping) -> tuple[Pattern, int | None]:
    """The heat-map pattern of a module from a stored config dict's ``eval`` section: identity
    (with its n_features) or dense when a pattern matches; identity over all inputs otherwise."""
    evals = config.get("eval") or {}
    for p in evals.get("identity_ci") or []:
        if fnmatch.fnmatchcase(module, p["layer_pattern"]):
            return "identity", p.get("n_features")
    for p in evals.get("dense_ci") or []:
        if fnmatch.fnmatchcase(module, p["layer_pattern"]):
            return "dense", None
    return "identity", None


def write_store_figures(store: FactorStore, out_dir: str | Path) -> FigureReport:
    """Write ``ci_<module>.png`` (toy stores), ``tms_columns.png`` (TMS stores) and
    ``training_curves.png`` (when curves exist) into `out_dir`, which must be a directory."""
    out = Path(out_dir)
    report = FigureReport()
    spec = store.target_spec.get("spec") or {}

    n_features = spec.get("n_features")
    if n_features is None:
        report.skipped["ci_*.png"] = (
            "the store's target has no one-hot input size (target_spec.spec.n_features); "
            "CI heat-maps are drawn for toy targets only"
        )
    else:
        from spd_core.eval.evaluation import one_hot_ci
        from spd_core.loading import load_component_model

        try:
            model, _ = load_component_model(store)
        except (StoreError, ConfigError) as err:
            report.skipped["ci_*.png"] = f"cannot rebuild the component model: {err}"
        else:
            ci = one_hot_ci(model, int(n_features))
            for name in store.modules:
                pattern, n_rows = ci_pattern_of(name, store.config)
                report.written.append(
                    plot_causal_importances(
                        ci[name],
                        out / f"ci_{file_stem(name)}.png",
                        module=name,
                        pattern=pattern,
                        n_identity_rows=n_rows,
                    )
                )

    if spec.get("kind") == "tms":
        state = store.target_state() or {}
        if "linear1.weight" not in state or "linear1" not in store.modules:
            report.skipped["tms_columns.png"] = (
                "needs the target weight target/linear1.weight and a decomposed linear1"
            )
        else:
            report.written.append(
                plot_tms_columns(
                    state["linear1.weight"],
                    store.U("linear1"),
                    store.V("linear1"),
                    out / "tms_columns.png",
                )
            )

    try:
        curves = store.curves()
    except StoreError as err:
        report.skipped["training_curves.png"] = str(err)
    else:
        if curves["step"].size == 0:
            report.skipped["training_curves.png"] = "the store has no training records"
        else:
            report.written.append(plot_training_curves(curves, out / "training_curves.png"))
    return report
