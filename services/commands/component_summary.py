"""Printing harvested component statistics: one component's summary, or a list of components.
Shared by `spd query summary` / `spd query list-components` (from a server) and `spd inspect
STORE --component` (from the store): both give the same JSON, printed the same way."""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from typing import Any


def jsonable(value: Any) -> Any:
    """A summary (spd_core's or the client's dataclass) as JSON: NaN becomes None."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _mean(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def shown_label(interpretation: dict[str, Any] | None) -> str:
    """The label (with its detection score beside the control), else the token summary."""
    if not interpretation:
        return ""
    if interpretation.get("label"):
        score = interpretation.get("detection_score")
        control = interpretation.get("detection_control")
        scores = (
            f" (detection {_mean(score)}, shuffled control {_mean(control)})"
            if score is not None
            else ""
        )
        return f"{interpretation['label']}{scores}"
    return interpretation.get("token_summary") or ""


def format_components(rows: list[dict[str, Any]]) -> list[str]:
    """A table of ListComponents rows."""
    lines = ["module  component  firing_frequency  firing_count  mean_ci_when_firing  label"]
    lines += [
        f"{r['module']}  {r['component']}  {r['firing_frequency']:.6f}  {r['firing_count']}  "
        f"{_mean(r['mean_ci_when_firing'])}  {shown_label(r.get('interpretation'))}".rstrip()
        for r in rows
    ]
    return lines


def _partners(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['module']}:{p['component']} ({p['count']})" for p in entries) or "-"


def _interpretation_lines(interpretation: dict[str, Any] | None) -> list[str]:
    if not interpretation:
        return []
    lines = []
    if interpretation.get("label"):
        lines.append(
            f"label         {interpretation['label']}  (by {interpretation['explainer_model']}; "
            f"detection score {_mean(interpretation.get('detection_score'))}, shuffled-label "
            f"control {_mean(interpretation.get('detection_control'))}; 0.5 is chance)"
        )
        if interpretation.get("explanation"):
            lines.append(f"explanation   {interpretation['explanation']}")
    elif interpretation.get("status") == "unparsed":
        lines.append("label         (the explainer's answers were malformed)")
    if interpretation.get("token_summary"):
        lines.append(f"token summary {interpretation['token_summary']}")
    return lines


def format_summary(d: dict[str, Any]) -> list[str]:
    """One component's summary (the JSON of `jsonable`) as text."""
    s = d["stats"]
    lines = [
        f"component {s['component']} of {s['module']}: fires on {s['firing_count']:,} of "
        f"{d['n_positions']:,} positions (firing_frequency {s['firing_frequency']:.6f}; CI > "
        f"{d['threshold']:g}), mean CI when firing {_mean(s['mean_ci_when_firing'])}",
        *_interpretation_lines(s.get("interpretation")),
        "CI histogram  "
        + "  ".join(
            f"{lo:.2f}:{n}" for lo, n in zip(d["bin_edges"], d["histogram"], strict=False) if n
        ),
        "top examples  (CI  input:position  context, the token in [brackets])",
    ]
    for e in d["top_examples"]:
        text = f"{e['before']}[{e['token']}]{e['after']}".replace("\n", "⏎") if e["token"] else ""
        lines.append(f"  {e['importance']:.4f}  {e['input']:>6}:{e['position']:<4} {text}")
    lines.append(f"fires with (same module)    {_partners(d['coactive_within_module'])}")
    lines.append(f"fires with (other modules)  {_partners(d['coactive_across_modules'])}")
    for by in ("precision", "recall"):
        entries = d.get(f"tokens_by_{by}") or []
        if entries:
            lines.append(
                f"tokens by {by}  "
                + ", ".join(
                    f"{t['token']!r} (p {t['precision']:.2f}, r {t['recall']:.2f}, {t['count']})"
                    for t in entries
                )
            )
    for way in ("up", "down"):
        entries = d.get(f"logits_{way}") or []
        if entries:
            lines.append(
                f"logits {way} when ablated  "
                + ", ".join(f"{c['token']!r} {c['change']:+.3f}" for c in entries)
            )
    return lines
