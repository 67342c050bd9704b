"""The prompt playground's state, all of it in the query string (so every view is a permalink):
the input, the chosen position, the selected components, the mask mode and its settings, and the
selection and mode of the answer before the last press. Parsed and checked here (a bad value is
a 400 that says what was wrong) and written back as canonical URLs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from services.explorer.page_errors import bad_parameter
from services.explorer.views.params import MAX_TEXT

MODES = ("keep", "ablate", "ci", "rounded_ci", "stochastic")
"""AblateRequest's mask modes, as the URL names them."""
SELECTION_MODES = ("keep", "ablate")
"""The modes that use the selected components."""
DEFAULT_MODE = "ci"
MAX_TOP_K = 50
"""Next tokens shown at most."""
MAX_SAMPLES = 8
"""Stochastic mask samples shown at most."""
MAX_VALUES = 4096
"""Numbers in a toy's input (x= or ids=)."""

Selection = dict[str, tuple[int, ...]]
"""Selected components: module -> sorted indices."""


@dataclass(frozen=True)
class PromptQuery:
    """What a playground URL asks for. Exactly one of text (language models), x (toys with a
    vector input) or ids (toys over token ids) is set, or none for the empty form."""

    text: str | None = None
    x: tuple[float, ...] | None = None
    ids: tuple[int, ...] | None = None
    pos: int | None = None
    """The chosen token position; None: the last."""
    selected: Selection = field(default_factory=dict)
    mode: str = DEFAULT_MODE
    delta: bool = False
    k: int = 10
    threshold: float = 0.0
    """Rounded-CI mode's threshold on the CI."""
    seed: int = 0
    samples: int = 1
    """Stochastic mode's mask samples (the other modes give one answer)."""
    was_mode: str | None = None
    """The mode of the answer shown before the last press (None: nothing to compare)."""
    was_selected: Selection = field(default_factory=dict)

    @property
    def has_input(self) -> bool:
        return self.text is not None or self.x is not None or self.ids is not None

    def with_changes(self, **changes: object) -> PromptQuery:
        return replace(self, **changes)  # type: ignore[arg-type]


def _one(items: Mapping[str, list[str]], key: str) -> str | None:
    values = items.get(key)
    if not values:
        return None
    if len(values) > 1:
        raise bad_parameter(f"{key} is given {len(values)} times; give it once")
    return values[0]


def _int(items: Mapping[str, list[str]], key: str, default: int, low: int, high: int) -> int:
    raw = _one(items, key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_parameter(f"{key}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise bad_parameter(f"{key}={value} is out of range: it must lie in [{low}, {high}]")
    return value


def _numbers(raw: str, key: str, kind: type) -> tuple:
    parts = [p.strip() for p in raw.replace("\n", ",").split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise bad_parameter(f"{key} is empty: give comma-separated numbers")
    if len(parts) > MAX_VALUES:
        raise bad_parameter(f"{key} has {len(parts)} numbers; at most {MAX_VALUES}")
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError:
        bad = next(p for p in parts if not _parses(p, kind))
        what = "a whole number" if kind is int else "a number"
        raise bad_parameter(f"{key}: {bad!r} is not {what}") from None
    if kind is float and not all(math.isfinite(v) for v in values):
        raise bad_parameter(f"{key} holds a value that is not finite")
    return values


def _parses(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def parse_component(raw: str, key: str = "c") -> tuple[str, tuple[int, ...]]:
    """`MODULE:I,J` (the form spd export's --ablate takes) -> (module, (I, J))."""
    module, sep, indices = raw.rpartition(":")
    if not sep or not module or not indices:
        raise bad_parameter(f"{key}={raw!r} is not MODULE:INDEX[,INDEX...] (e.g. linear1:3)")
    parts = [p.strip() for p in indices.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise bad_parameter(f"{key}={raw!r}: the indices after ':' must be whole numbers >= 0")
    return module, tuple(int(p) for p in parts)


def parse_selection(values: Iterable[str], key: str = "c") -> Selection:
    """Repeated `MODULE:I,J` values merged per module (indices sorted, duplicates dropped)."""
    merged: dict[str, set[int]] = {}
    for raw in values:
        module, indices = parse_component(raw, key)
        merged.setdefault(module, set()).update(indices)
    return {m: tuple(sorted(ix)) for m, ix in merged.items()}


def parse_query(pairs: Iterable[tuple[str, str]]) -> PromptQuery:
    """The query string's (key, value) pairs, checked (400 naming the bad parameter)."""
    items: dict[str, list[str]] = {}
    for key, value in pairs:
        items.setdefault(key, []).append(value)
    inputs = [key for key in ("text", "x", "ids") if key in items]
    if len(inputs) > 1:
        raise bad_parameter(f"give one of text, x or ids, not {' and '.join(inputs)}")
    text = _one(items, "text")
    if text is not None:
        if not text.strip():
            raise bad_parameter("text is empty: type a prompt")
        if len(text) > MAX_TEXT:
            raise bad_parameter(f"text is {len(text)} characters long; at most {MAX_TEXT}")
    x_raw, ids_raw = _one(items, "x"), _one(items, "ids")
    mode = _one(items, "mode") or DEFAULT_MODE
    if mode not in MODES:
        raise bad_parameter(f"mode={mode!r} is not one of {', '.join(MODES)}")
    was_mode = _one(items, "was_mode") or None
    if was_mode is not None and was_mode not in MODES:
        raise bad_parameter(f"was_mode={was_mode!r} is not one of {', '.join(MODES)}")
    delta = _one(items, "delta") or "0"
    if delta not in ("0", "1"):
        raise bad_parameter(f"delta={delta!r} is not 0 or 1")
    threshold_raw = _one(items, "threshold") or "0"
    try:
        threshold = float(threshold_raw)
    except ValueError:
        raise bad_parameter(f"threshold={threshold_raw!r} is not a number") from None
    if not 0.0 <= threshold <= 1.0:
        raise bad_parameter(f"threshold={threshold_raw} is out of range: it must lie in [0, 1]")
    samples = _int(items, "samples", 1, 1, MAX_SAMPLES)
    pos_raw = _one(items, "pos")
    return PromptQuery(
        text=text,
        x=_numbers(x_raw, "x", float) if x_raw is not None else None,
        ids=_numbers(ids_raw, "ids", int) if ids_raw is not None else None,
        pos=None if pos_raw in (None, "") else _int(items, "pos", 0, 0, 1 << 30),
        selected=parse_selection(items.get("c", [])),
        mode=mode,
        delta=delta == "1",
        k=_int(items, "k", 10, 1, MAX_TOP_K),
        threshold=threshold,
        seed=_int(items, "seed", 0, 0, 2**31 - 1),
        samples=samples,
        was_mode=was_mode,
        was_selected=parse_selection(items.get("was_c", []), "was_c"),
    )


def component_values(selection: Selection) -> list[str]:
    """The selection as `MODULE:I,J` strings, one per module."""
    return [f"{m}:{','.join(map(str, ix))}" for m, ix in selection.items() if ix]


def _number(v: float) -> str:
    return f"{v:g}" if v == v and abs(v) < 1e16 else repr(v)


def query_pairs(q: PromptQuery) -> list[tuple[str, str]]:
    """The URL's (key, value) pairs for `q`, in a fixed order, defaults left out."""
    pairs: list[tuple[str, str]] = []
    if q.text is not None:
        pairs.append(("text", q.text))
    if q.x is not None:
        pairs.append(("x", ",".join(_number(v) for v in q.x)))
    if q.ids is not None:
        pairs.append(("ids", ",".join(map(str, q.ids))))
    if q.pos is not None:
        pairs.append(("pos", str(q.pos)))
    pairs += [("c", v) for v in component_values(q.selected)]
    if q.mode != DEFAULT_MODE:
        pairs.append(("mode", q.mode))
    if q.delta:
        pairs.append(("delta", "1"))
    for key, value, default in (("k", q.k, 10), ("seed", q.seed, 0), ("samples", q.samples, 1)):
        if value != default:
            pairs.append((key, str(value)))
    if q.threshold:
        pairs.append(("threshold", _number(q.threshold)))
    if q.was_mode is not None:
        pairs.append(("was_mode", q.was_mode))
        pairs += [("was_c", v) for v in component_values(q.was_selected)]
    return pairs


def prompt_url(name: str, q: PromptQuery) -> str:
    """The playground URL (below the route prefix) of `q`."""
    pairs = query_pairs(q)
    return f"/d/{name}/prompt" + (f"?{urlencode(pairs)}" if pairs else "")


def ordered(selection: Selection, modules: Sequence[str]) -> Selection:
    """The selection in the decomposition's module order."""
    return {m: selection[m] for m in modules if m in selection}
