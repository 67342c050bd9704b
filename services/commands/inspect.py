"""`spd inspect STORE [--json] [--plot DIR]`: summarise a factor store and draw its figures."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from services.commands.store_location import add_storage_options, store_location
from spd_core.store import FactorStore, StoreError, UnverifiableStoreWarning
from spd_core.store.location import Location

# Per-module metrics are stored as "<prefix>/<module>"; these prefixes become table columns.
_MODULE_COLUMNS = {"alive": "alive", "l0": "l0"}
_PATTERN_ERRORS = ("identity_ci_error", "dense_ci_error")
# What "integrity" says of a complete store whose listing matched its manifest.
_LISTING_OK = "every file listed in the manifest is present, at its size (`spd verify` reads them)"

DESCRIPTION = """\
Summarise a factor store written by `spd decompose`, and optionally draw its figures.

The table lists every decomposed module with
  kind            linear | conv1d | embedding
  C               number of rank-one subcomponents
  d_in, d_out     the weight's input and output sizes (U is C x d_out, V is C x d_in)
  alive           components whose causal importance (CI) exceeded the alive threshold
                  on some evaluation input (metric alive/<module>)
  L0              mean number of components with CI above the threshold per input (l0/<module>)
  CI-pattern err  distance of the CI on one-hot inputs from the expected pattern (identity:
                  one dedicated component per input; dense: k components active on every
                  input); 0 is perfect (identity_ci_error/<module>, dense_ci_error/<module>)
followed by the other stored metrics (loss terms, MMCS/ML2R, ci_error/total, ...) and the
store's completeness, schema version, code version and the config's target.

--json prints one JSON object instead, with the keys
  path, complete, schema, integrity, code_version, target, steps, seed,
  modules   {name: {kind, C, d_in, d_out, alive, l0[, identity_ci_error | dense_ci_error]}}
            (alive/l0 are null when the store has no such metric)
  metrics   every stored summary metric, flat, exactly as stored (NaN is null)
  training  {last_step, latest: {curve: {step, value}}}: the last logged step and each training
            curve's latest finite value (the table shows these for an unfinished store)
  figures   the PNG paths written, and figures_skipped {figure: reason} (only with --plot)

--plot DIR writes PNG figures into DIR (created if missing) and prints their paths:
  ci_<module>.png      heat-map of each module's causal importances on the one-hot inputs
                       (x 0.75; rows inputs, columns components). Columns are permuted to the
                       identity pattern (largest CI of each input on the diagonal) or, for
                       modules the config evaluates against a dense pattern, sorted by total
                       CI; components never above 0.1 are hidden (the figure says how many).
                       Toy targets only (the store must carry the target's weights).
  tms_columns.png      TMS targets: the target's linear1 columns W[:, j] next to the column
                       V[c, j]*U[c] of each significant subcomponent c at the input j it reads
                       most (arrows for 2 hidden dims, heat-maps otherwise), with MMCS/ML2R.
  training_curves.png  loss terms (log scale) and L0 per module over training, if recorded.

--component MODULE:INDEX prints that component's statistics from the store's harvest (`spd
harvest`): firing frequency, mean CI, histogram, top examples, co-firing components, token
statistics. Without a harvest, for text models, it lists the tokens where the component is most
causally important on held-out windows of the store's corpus, with their context (--top K of them,
from the first --windows N held-out windows). With --json it comes under the key "component".

A missing, incomplete, corrupt or newer-schema store is an error (exit status 2), and so is a
complete store whose files differ from its integrity manifest (a chunk missing or truncated; the
check is one listing, `spd verify` reads every byte); "integrity" says what was checked. Use
--allow-incomplete to look at a store whose run has not finished: the table then also shows how
far the run got (its last logged step and each curve's latest value).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise a factor store (table or JSON) and optionally draw its figures",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE", help="path or URL of a .zarr factor store")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument(
        "--plot",
        metavar="DIR",
        help="write PNG figures into DIR (created if missing) and print their paths",
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="read a store whose run did not finish (or is still running)",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads for --plot (default 1)"
    )
    p.add_argument(
        "--component",
        metavar="MODULE:INDEX",
        help="one component's harvested statistics; without a harvest (text models), the "
        "held-out tokens where it is most causally important",
    )
    p.add_argument("--top", type=int, default=10, help="how many contexts --component lists")
    add_storage_options(p)
    p.add_argument("--windows", type=int, default=64, help="held-out windows --component searches")


def _fail(message: str) -> int:
    print(f"spd inspect: error: {message}", file=sys.stderr)
    return 2


def _number(value: Any) -> Any:
    """JSON-safe metric value: NaN/inf become None, integral floats stay floats."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarize(store: FactorStore) -> dict[str, Any]:
    """The content of the table / the JSON object (without ``figures``)."""
    metrics = {k: _number(v) for k, v in sorted(store.metrics.items())}
    config = store.config
    modules: dict[str, dict[str, Any]] = {}
    for name, layout in store.modules.items():
        entry: dict[str, Any] = {
            "kind": layout.kind,
            "C": layout.C,
            "d_in": layout.d_in,
            "d_out": layout.d_out,
        }
        for prefix, key in _MODULE_COLUMNS.items():
            entry[key] = metrics.get(f"{prefix}/{name}")
        for prefix in _PATTERN_ERRORS:
            if f"{prefix}/{name}" in metrics:
                entry[prefix] = metrics[f"{prefix}/{name}"]
        modules[name] = entry
    return {
        "path": str(store.path),
        "complete": store.complete,
        "schema": store.schema_version,
        "integrity": store.integrity_note or _LISTING_OK,
        "code_version": store.code_version or None,
        "target": config.get("target"),
        "steps": config.get("steps"),
        "seed": config.get("seed"),
        "modules": modules,
        "metrics": metrics,
        "training": training_progress(store),
    }


def training_progress(store: FactorStore) -> dict[str, Any]:
    """The last logged step and each training curve's latest finite value, with its step (the
    evaluation figures are logged only every `eval_freq` steps)."""
    curves = store.curves()
    steps = curves.pop("step")
    latest = {}
    for name, values in sorted(curves.items()):
        finite = [i for i, v in enumerate(values.tolist()) if math.isfinite(v)]
        if finite:
            latest[name] = {"step": int(steps[finite[-1]]), "value": float(values[finite[-1]])}
    return {"last_step": int(steps[-1]) if len(steps) else None, "latest": latest}


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{int(value)}" if value.is_integer() and abs(value) < 1e6 else f"{value:.6g}"
    return str(value)


def _target_text(target: Any) -> str:
    if not isinstance(target, dict):
        return "n/a (no target in the config)"
    name = target.get("name") or target.get("model") or "?"
    text = f"{name} ({target.get('kind', '?')})"
    if target.get("overrides"):
        text += f" with overrides {json.dumps(target['overrides'], sort_keys=True)}"
    return text


def _module_metric_keys(modules: dict[str, dict[str, Any]]) -> set[str]:
    keys = {f"{p}/{m}" for m in modules for p in (*_MODULE_COLUMNS, *_PATTERN_ERRORS)}
    return keys


def format_table(summary: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [
        f"factor store  {summary['path']}",
        f"  complete      {_fmt(summary['complete'])}",
        f"  schema        {summary['schema']}",
        f"  integrity     {summary['integrity']}",
        f"  code version  {_fmt(summary['code_version'])}",
        f"  target        {_target_text(summary['target'])}",
        f"  steps         {_fmt(summary['steps'])}    seed {_fmt(summary['seed'])}",
        "",
    ]
    header = ["module", "kind", "C", "d_in", "d_out", "alive", "L0", "CI-pattern err"]
    rows = []
    for name, m in summary["modules"].items():
        pattern = next(
            (f"{p.removesuffix('_ci_error')} {_fmt(m[p])}" for p in _PATTERN_ERRORS if p in m),
            "-",
        )
        l0 = "n/a" if m["l0"] is None else f"{m['l0']:.4g}"
        rows.append(
            [
                name,
                m["kind"],
                str(m["C"]),
                str(m["d_in"]),
                str(m["d_out"]),
                _fmt(m["alive"]),
                l0,
                pattern,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    left = {0, 1, 7}

    def line(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines.append(line(header))
    lines.append(line(["-" * w for w in widths]))
    lines.extend(line(r) for r in rows)

    if not summary["complete"]:
        lines.extend(["", *_progress_lines(summary)])
    per_module = _module_metric_keys(summary["modules"])
    others = {k: v for k, v in summary["metrics"].items() if k not in per_module}
    lines.append("")
    if others:
        lines.append("metrics")
        width = max(len(k) for k in others)
        lines.extend(f"  {k.ljust(width)}  {_fmt(v)}" for k, v in others.items())
    else:
        lines.append("metrics       (none stored)")
    return "\n".join(lines)


def _progress_lines(summary: dict[str, Any]) -> list[str]:
    """How far an unfinished run got: its last logged step and latest curve values."""
    training = summary["training"]
    if training["last_step"] is None:
        return ["training      nothing logged yet"]
    lines = [
        f"training      {training['last_step']} of {_fmt(summary['steps'])} steps logged; "
        "latest values:"
    ]
    width = max((len(k) for k in training["latest"]), default=0)
    lines.extend(
        f"  {k.ljust(width)}  {v['value']:<10.4g}  (step {v['step']})"
        for k, v in training["latest"].items()
    )
    return lines


def _open(path: Location, allow_incomplete: bool) -> FactorStore:
    try:
        return FactorStore.open(path, allow_incomplete=allow_incomplete)
    except StoreError as err:
        if allow_incomplete:
            raise
        try:
            FactorStore.open(path, allow_incomplete=True)
        except StoreError:
            raise err from None
        raise StoreError(
            f"{err} (with spd inspect: pass --allow-incomplete to see what is there)"
        ) from None


def _plot_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--plot {path}: exists and is not a directory; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NotADirectoryError(f"--plot {path}: cannot create the folder ({err})") from None
    return out


def run(args: argparse.Namespace) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnverifiableStoreWarning)  # "integrity" says it
            store = _open(store_location(args.store, args), args.allow_incomplete)
        summary = summarize(store)
    except StoreError as err:
        return _fail(str(err))

    figures: list[str] = []
    skipped: dict[str, str] = {}
    if args.plot is not None:
        try:
            out = _plot_dir(args.plot)
        except NotADirectoryError as err:
            return _fail(str(err))
        import torch

        from spd_core.eval.figures import write_store_figures

        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            report = write_store_figures(store, out)
        except StoreError as err:
            return _fail(str(err))
        except OSError as err:
            return _fail(f"--plot {args.plot}: cannot write figures ({err})")
        figures = [str(p) for p in report.written]
        skipped = report.skipped

    report = None
    if args.component is not None:
        import torch

        from services.commands.component_contexts import component_report

        torch.set_num_threads(args.threads)
        try:
            report = component_report(store, args.component, args.top, args.windows)
        except (StoreError, ValueError) as err:
            return _fail(str(err))

    if args.json:
        if report is not None:
            summary["component"] = report
        if args.plot is not None:
            summary["figures"] = figures
            summary["figures_skipped"] = skipped
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(summary))
        if args.plot is not None:
            print("")
            print(f"figures in {args.plot}" if figures else f"no figures written to {args.plot}")
            for path in figures:
                print(f"  {path}")
        if report is not None:
            from services.commands.component_contexts import format_report

            print("")
            print(format_report(report))
    for name, reason in skipped.items():
        print(f"spd inspect: skipped {name}: {reason}", file=sys.stderr)
    return 0
